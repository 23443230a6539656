"""The engine's cluster writes: classify who changed an object, write, confirm, verify.

Every write is a server-side apply (or a delete) with field manager `meshgate` and the live
resourceVersion as precondition, and it is recorded as done only once it is confirmed: by the
write's answer when it carries the whole object and equals what was intended, otherwise by reading
the object back. A write whose outcome is unknown (a timeout, a reset connection, a 5xx, a 409) is
resolved the same way: read live, compare with what was intended, then adopt it, retry it, or give
up with the truth (`WriteUnconfirmed`).

Who changed an object. Meshgate keeps, per object, the resourceVersion and content hash it last saw
or wrote and a digest of the *other* field managers' `managedFields` entries (manager, operation,
time, fields). A live object whose resourceVersion moved is:
- Meshgate's own when the other managers' entries are what Meshgate last saw (its own write whose
  answer was lost, an applied-but-errored write, a no-op apply): the write goes on;
- another writer's edit when those entries changed (an Update or Apply by another manager stamps
  its entry): `OutOfBand`, nothing is overwritten.
A 409 whose live object is still Meshgate's is the API server's transient conflict: retried.

`live_matches` is the one verification (a restore checks it against the snapshot, a promotion
against the approved content).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integrations import kubernetes as kube
from integrations.kubernetes import ClusterConfig
from integrations.kubernetes.exceptions import Conflict, KubernetesError, NotFound
from policies.normalize import content_hash, normalize_object
from policies.rollout import ownership, strategies

FIELD_MANAGER = "meshgate"
# Tries of one write inside an action (each one re-reads live first); then the action fails and is
# retried with a growing delay by the engine.
WRITE_TRIES = 4
WRITE_BACKOFF_SECONDS = 0.2

Obj = dict[str, Any]


class OutOfBand(Exception):
    """Another writer changed the object since Meshgate last saw or wrote it."""

    def __init__(
        self,
        identity: str,
        expected: str,
        live: str,
        *,
        managers: list[str] | None = None,
        changed: list[str] | None = None,
    ):
        who = f" by {', '.join(managers)}" if managers else ""
        what = f" at {', '.join(changed[:8])}" if changed else ""
        super().__init__(
            f"{identity} was changed outside Meshgate{who}{what} (resourceVersion "
            f"{expected or 'absent'} expected, {live or 'absent'} live): nothing was overwritten"
        )
        self.identity, self.expected, self.live = identity, expected, live
        self.managers, self.changed = managers or [], changed or []

    def as_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "expected": self.expected,
            "live": self.live,
            "managers": self.managers,
            "changed": self.changed,
        }


class WriteUnconfirmed(KubernetesError):
    """A write whose outcome could not be confirmed after its tries; `live` is what the cluster holds."""

    def __init__(self, message: str, *, live: dict[str, Any]):
        super().__init__(message)
        self.live = live


@dataclass
class Known:
    """What Meshgate last saw or wrote of one object."""

    resource_version: str
    content_hash: str
    owners: dict[str, Any] | None  # None: not recorded (a rollout started before it was kept)


@dataclass
class WriteOutcome:
    """`written`: a write was sent and confirmed; `live`: the object now (None: absent);
    `confirmed_by`: "answer" | "read" | "already" (live already was the intended object)."""

    written: bool
    live: Obj | None
    confirmed_by: str
    tries: int = 1
    errors: list[str] = field(default_factory=list)


def rv_of(obj: Obj | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion", "") if obj else ""


def hash_of(obj: Obj | None) -> str:
    return content_hash(normalize_object(obj)) if obj is not None else ""


def owners_of(obj: Obj | None) -> dict[str, Any]:
    """The object's managedFields as Meshgate remembers them: per manager entry (manager, operation,
    subresource) its time and fields; Meshgate's own entry apart."""
    entries: dict[str, Any] = {}
    own = None
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        record = {"time": entry.get("time", ""), "fields": entry.get("fieldsV1") or {}}
        if entry.get("manager") == FIELD_MANAGER:
            own = record
        else:
            entries["|".join((entry.get("manager", ""), entry.get("operation", ""), entry.get("subresource", "")))] = (
                record
            )
    return {"others": entries, "own": own}


def _fields_within(fields: Any, known: Any) -> bool:
    if not isinstance(fields, dict) or not isinstance(known, dict):
        return fields == known or not fields
    return all(key in known and _fields_within(value, known[key]) for key, value in fields.items())


def other_writers(live: Obj | None, known: dict[str, Any]) -> list[str]:
    """Managers other than Meshgate whose entry is new, was stamped again, or owns more fields than
    Meshgate last saw (Meshgate's force apply only ever takes fields away from them)."""
    seen = (known or {}).get("others") or {}
    found = []
    for key, record in owners_of(live)["others"].items():
        before = seen.get(key)
        if (
            before is None
            or before.get("time") != record["time"]
            or not _fields_within(record["fields"], before.get("fields"))
        ):
            found.append(key.split("|")[0])
    return sorted(set(found))


def managers_of(obj: Obj | None) -> list[str]:
    return sorted(
        {
            e.get("manager", "")
            for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []
            if e.get("manager") != FIELD_MANAGER
        }
    )


def known_of(obj: Obj | None) -> Known:
    return Known(rv_of(obj), hash_of(obj), owners_of(obj))


def live_matches(live: Obj | None, intended: Obj | None) -> bool:
    """The verification: live holds the intended object (normalized; absent == absent), the same
    comparison the plan made before approval (`ownership.held_differences`)."""
    return not ownership.held_differences(approved=intended, held=live)


def changed_paths(before: Obj | None, after: Obj | None, prefix: str = "") -> list[str]:
    """Leaf paths that differ between two normalized objects (lists compared whole)."""
    a = normalize_object(before) if before is not None and not prefix else before
    b = normalize_object(after) if after is not None and not prefix else after
    if isinstance(a, dict) and isinstance(b, dict):
        paths: list[str] = []
        for key in sorted(set(a) | set(b)):
            paths += changed_paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [] if a == b else [prefix or "(object)"]


def read(cfg: ClusterConfig, identity: str) -> Obj | None:
    kind, namespace, name = strategies.split_identity(identity)
    try:
        return kube.get_object(cfg, kind, namespace, name)
    except NotFound:
        return None


def classify(identity: str, live: Obj | None, known: Known) -> None:
    """Raises `OutOfBand` when someone else changed `live` since `known`; returns when it is Meshgate's."""
    if rv_of(live) == known.resource_version:
        return
    if live is None:
        # Gone, and Meshgate did not delete it (a delete of Meshgate's is confirmed and recorded).
        raise OutOfBand(identity, known.resource_version, "", changed=["(deleted)"])
    if known.owners is None:
        if hash_of(live) == known.content_hash:
            return
        raise OutOfBand(identity, known.resource_version, rv_of(live), managers=managers_of(live))
    if not known.resource_version:
        # Meshgate expected no object: one that only Meshgate manages is its own create whose answer
        # was lost; any other manager created it.
        writers = managers_of(live)
        if writers:
            raise OutOfBand(identity, "", rv_of(live), managers=writers)
        return
    writers = other_writers(live, known.owners)
    if writers:
        raise OutOfBand(identity, known.resource_version, rv_of(live), managers=writers)
    if hash_of(live) != known.content_hash and owners_of(live)["own"] == (known.owners or {}).get("own"):
        # The content moved but neither another manager's entry nor Meshgate's own did.
        raise OutOfBand(identity, known.resource_version, rv_of(live), managers=["(unknown)"])


def write_confirmed(
    cfg: ClusterConfig,
    identity: str,
    intended: Obj | None,
    known: Known,
    *,
    renew: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteOutcome:
    """Makes live == intended and confirms it. Raises `OutOfBand` (another writer), or
    `WriteUnconfirmed` after `WRITE_TRIES` writes whose outcome stayed unknown; a failing read
    raises its `KubernetesError` (the engine retries the action)."""
    kind, namespace, name = strategies.split_identity(identity)
    errors: list[str] = []
    sent = False
    live: Obj | None = None
    for attempt in range(1, WRITE_TRIES + 1):
        live = read(cfg, identity)
        if live_matches(live, intended):
            return WriteOutcome(sent, live, "read" if sent else "already", attempt, errors)
        classify(identity, live, known)
        known = known_of(live)  # Meshgate's: continue from it
        renew()
        try:
            sent = True
            if intended is None:
                kube.delete_object(cfg, kind, namespace, name, resource_version=rv_of(live) or None)
                continue  # a delete's answer carries no object: confirmed by the next read
            # force: the precondition and `classify` guarantee live is Meshgate's (snapshot or own
            # write), so forcing only takes over fields other managers set before the rollout; the
            # Update managers' fields are migrated as `kubectl apply --server-side` does.
            answer = ownership.apply_owned(cfg, intended, live=live).obj
        except NotFound:
            if intended is None:
                continue
            errors.append("404 on write")
        except Conflict as exc:
            errors.append(f"409: {exc.message}")
        except KubernetesError as exc:  # 5xx, timeout, reset: the outcome is unknown
            errors.append(f"{exc.status or 'unreachable'}: {exc.message}")
        else:
            if live_matches(answer, intended):
                return WriteOutcome(True, answer, "answer", attempt, errors)
            errors.append("the answer differs from the intended object")
        sleep(WRITE_BACKOFF_SECONDS * attempt)
    live = read(cfg, identity)
    if live_matches(live, intended):
        return WriteOutcome(sent, live, "read", WRITE_TRIES, errors)
    classify(identity, live, known)
    raise WriteUnconfirmed(
        f"{identity}: write not confirmed after {WRITE_TRIES} tries ({'; '.join(errors[-3:])}); live differs "
        f"from the intended object at {', '.join(changed_paths(live, intended)[:8]) or '(object)'}",
        live={identity: normalize_object(live) if live is not None else None},
    )
