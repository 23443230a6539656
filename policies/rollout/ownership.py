"""How Meshgate writes an object it governs, what the cluster then holds, and who else manages it.

One write, used by the rollout for every apply and by the plan (with ``dry_run=True``, every request
sent with ``dryRun=All``) to learn what that write will leave in the cluster:

1. a server-side apply of the desired object, field manager ``meshgate``, ``force=True`` and the
   live resourceVersion as precondition (the precondition guarantees force only takes over what
   the live object held when Meshgate read it);
2. when the server's answer still lists ``Update`` managers of the main resource (kubectl
   client-side apply, ``before-first-apply``, ``kubectl edit``/``patch``...), one JSON patch under a
   ``test`` of the answer's resourceVersion moves their fields into Meshgate's ``Apply`` entry,
   exactly what ``kubectl apply --server-side`` does to upgrade an object from client-side apply
   (client-go ``csaupgrade``), and in the same request removes the fields Meshgate then owns alone
   and does not set, as the documentation says a re-apply does for any applier ("If the field is not
   owned by any other field managers, it is either deleted from the live object or reset to its
   default value"). The patch states the whole content it leaves (``spec``, labels, annotations)
   and the ownership it records, so its answer does not depend on the state it is sent to.

Why the second request states the whole content: an API server answers a dry-run against the object
it stores, never against another dry-run's answer, so a dry-run of a re-apply after a dry-run of the
managedFields patch would answer as if the patch had not happened. A request whose result is fully
stated (given the ``test`` of the resourceVersion) has the same answer in the dry-run and in the
real write: the plan's "after" is the server's dry-run answer to the last request of the write (its
validation, CEL rules and defaults included), not a prediction made beside it.

Fields owned by another ``Apply`` manager (another declarative tool) are not taken: they survive
the write, and the plan reports them (`held_differences`) so that nobody approves content the
cluster will not hold.

`held_differences(approved, held)` is the comparison both the plan (before approval) and the
rollout's final verification (after promotion) make, so approved and verified cannot disagree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from integrations import kubernetes as kube
from integrations.kubernetes.client import FIELD_MANAGER
from policies.diff import Change, structural_changes
from policies.normalize import normalize_object

Obj = dict[str, Any]
Path = tuple[str, ...]


@dataclass(frozen=True)
class Written:
    """What the server holds after the write (or would hold, for a dry run)."""

    obj: Obj
    taken_from: list[str] = field(default_factory=list)


# --- managedFields ---------------------------------------------------------------------------------


def _entries(obj: Obj | None) -> list[Obj]:
    return list(((obj or {}).get("metadata") or {}).get("managedFields") or [])


def takeover_managers(obj: Obj | None) -> list[str]:
    """Managers whose fields Meshgate's write takes over: Update operations on the main resource."""
    return sorted(
        {
            str(entry.get("manager", ""))
            for entry in _entries(obj)
            if entry.get("operation") == "Update"
            and not entry.get("subresource")
            and entry.get("manager") != FIELD_MANAGER
        }
    )


def _union(left: Obj, right: Obj) -> Obj:
    result = copy.deepcopy(left)
    for key, value in right.items():
        result[key] = _union(result.get(key) or {}, value) if isinstance(value, dict) else value
    return result


def migrated_managed_fields(obj: Obj, manager: str = FIELD_MANAGER) -> list[Obj] | None:
    """`csaupgrade`: the Update entries of the main resource merged into ``manager``'s Apply entry.
    None when there is nothing to migrate."""
    entries = _entries(obj)
    moved = [
        e
        for e in entries
        if e.get("operation") == "Update" and not e.get("subresource") and e.get("manager") != manager
    ]
    if not moved:
        return None
    kept = [e for e in entries if e not in moved]
    own = next(
        (e for e in kept if e.get("manager") == manager and e.get("operation") == "Apply" and not e.get("subresource")),
        None,
    )
    if own is None:
        own = {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": obj.get("apiVersion", ""),
            "time": moved[0].get("time", ""),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
        kept.append(own)
    fields: Obj = own.get("fieldsV1") or {}
    for entry in moved:
        fields = _union(fields, entry.get("fieldsV1") or {})
    own["fieldsV1"] = fields
    return [copy.deepcopy(e) for e in kept]


def _paths(tree: Obj, prefix: Path = ()) -> set[Path]:
    """Owned field paths of a FieldsV1 tree (list items ``k:``/``v:`` count as their list)."""
    paths: set[Path] = set()
    children = {k: v for k, v in tree.items() if k.startswith("f:")}
    if prefix and (not tree or "." in tree or any(not k.startswith("f:") and k != "." for k in tree)):
        paths.add(prefix)
    for key, child in children.items():
        paths |= _paths(child or {}, (*prefix, key[2:]))
    return paths


def _leaves(obj: Any, prefix: Path = ()) -> set[Path]:
    if isinstance(obj, dict) and obj:
        out: set[Path] = set()
        for key, value in obj.items():
            out |= _leaves(value, (*prefix, key))
        return out
    return {prefix} if prefix else set()


def _delete(obj: Obj, path: Path) -> None:
    parents = [obj]
    for segment in path[:-1]:
        child = parents[-1].get(segment)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 1, -1):
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


def _intent_paths(desired: Obj) -> set[Path]:
    meta = desired.get("metadata") or {}
    paths: set[Path] = {
        ("metadata", section, key) for section in ("labels", "annotations") for key in meta.get(section) or {}
    }
    for key, value in desired.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            paths |= _leaves(value, (key,))
    return paths


def reapplied(applied: Obj, entries: list[Obj], desired: Obj) -> Obj:
    """What the object holds once ``entries`` are its managedFields and ``desired`` is applied again:
    every field Meshgate alone owns that ``desired`` does not set is removed, and Meshgate's Apply
    entry owns exactly what ``desired`` sets (the content and ownership the takeover patch states)."""
    result = copy.deepcopy(applied)
    own: set[Path] = set()
    others: set[Path] = set()
    for entry in entries:
        paths = _paths(entry.get("fieldsV1") or {})
        mine = (
            entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and not entry.get("subresource")
        )
        (own if mine else others).update(paths)
    intent = _intent_paths(desired)

    def covered(path: Path, owned: set[Path]) -> bool:
        return any(path[:n] in owned for n in range(1, len(path) + 1))

    for path in sorted(_leaves({k: v for k, v in applied.items() if k not in ("apiVersion", "kind", "status")})):
        if path[0] == "metadata" and (len(path) != 3 or path[1] not in ("labels", "annotations")):
            continue
        if covered(path, intent) or any(p[: len(path)] == path for p in intent):
            continue
        if covered(path, own) and not covered(path, others):
            _delete(result, path)
    meta = result.get("metadata") or {}
    for section in ("labels", "annotations"):
        if section in meta and not meta[section]:
            meta.pop(section)
    # The re-apply leaves Meshgate owning exactly what it sets.
    tree: Obj = {}
    for path in sorted(intent):
        node = tree
        for segment in path:
            node = node.setdefault(f"f:{segment}", {})
    meta["managedFields"] = [
        {**entry, "fieldsV1": tree}
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply" and not entry.get("subresource")
        else entry
        for entry in entries
    ]
    return result


# --- the write ----------------------------------------------------------------------------------------


def _rv(obj: Obj | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))


def takeover_patch(applied: Obj, target: Obj) -> list[Obj]:
    """The JSON patch turning ``applied`` (the first request's answer) into ``target``: a ``test`` of
    its resourceVersion, then every top-level field, the labels, the annotations and the
    managedFields stated as ``target`` holds them."""
    operations: list[Obj] = [{"op": "test", "path": "/metadata/resourceVersion", "value": _rv(applied)}]
    fixed = ("apiVersion", "kind", "metadata", "status")
    for key in sorted((set(applied) | set(target)) - set(fixed)):
        if key in target:
            operations.append({"op": "add", "path": f"/{key}", "value": target[key]})
        else:
            operations.append({"op": "remove", "path": f"/{key}"})
    before, after = applied.get("metadata") or {}, target.get("metadata") or {}
    for section in ("labels", "annotations"):
        if section in after:
            operations.append({"op": "add", "path": f"/metadata/{section}", "value": after[section]})
        elif section in before:
            operations.append({"op": "remove", "path": f"/metadata/{section}"})
    operations.append({"op": "add", "path": "/metadata/managedFields", "value": after.get("managedFields") or []})
    return operations


def apply_owned(cfg: kube.ClusterConfig, desired: Obj, *, live: Obj | None, dry_run: bool = False) -> Written:
    """Writes ``desired`` taking over the fields of Update managers (see the module docstring); with
    ``dry_run`` every request is a server dry-run and the answer is what the write would leave.
    Raises the adapter's errors (a 409 Conflict when live moved since it was read)."""
    body = copy.deepcopy(desired)
    body.setdefault("metadata", {}).pop("resourceVersion", None)
    if live is not None:
        body["metadata"]["resourceVersion"] = _rv(live)
    applied = kube.apply_object(cfg, body, dry_run=dry_run, force=True)
    migrated = migrated_managed_fields(applied)
    if migrated is None:
        return Written(applied)
    taken = takeover_managers(applied)
    target = reapplied(applied, migrated, desired)
    meta = applied.get("metadata") or {}
    answer = kube.patch_object_json(
        cfg,
        applied["kind"],
        meta.get("namespace", ""),
        meta.get("name", ""),
        takeover_patch(applied, target),
        dry_run=dry_run,
    )
    if dry_run:
        # The content is the server's answer. Its managedFields are not: a dry-run is recorded against
        # the stored object (where the patch's content is a change by an Update manager), while the
        # real patch follows the first request's answer and only removes values, so the server records
        # exactly the ownership the patch states.
        answer["metadata"]["managedFields"] = copy.deepcopy(target["metadata"]["managedFields"])
    return Written(answer, taken)


# --- comparison shared by plan and verification -------------------------------------------------------


def held_differences(*, approved: Obj | None, held: Obj | None) -> list[Change]:
    """How what the cluster holds (or would hold) differs from the approved content, normalized."""
    left = normalize_object(approved) if approved is not None else None
    right = normalize_object(held) if held is not None else None
    if left == right:
        return []
    return structural_changes(left, right)


def owners_of(obj: Obj | None, dotted: str) -> list[str]:
    """The managers recorded as owning a field (``spec.trafficPolicy.tls``) or one of its parents/children."""
    path = tuple(p for p in dotted.replace("[", ".[").split(".") if p and not p.startswith("["))
    found = set()
    for entry in _entries(obj):
        for owned in _paths(entry.get("fieldsV1") or {}):
            if owned[: len(path)] == path or path[: len(owned)] == owned:
                found.add(str(entry.get("manager", "")))
    return sorted(found)


# --- other controllers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Controller:
    name: str
    evidence: str


_CONTROLLER_MANAGERS = {
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
    "helm": "Helm",
}


def foreign_controller(obj: Obj | None) -> Controller | None:
    """The GitOps or package tool that manages the live object, from its labels, annotations and
    field managers (Argo CD, Flux, Helm), or None."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    marks = {**labels, **annotations}
    for key in sorted(marks):
        if key.startswith(("kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")):
            return Controller("Flux", f"{key}: {marks[key]}")
    for key in sorted(marks):
        if key.startswith("argocd.argoproj.io/"):
            return Controller("Argo CD", f"{key}: {marks[key]}")
    if labels.get("app.kubernetes.io/managed-by") == "Helm" or any(k.startswith("meta.helm.sh/") for k in annotations):
        release = annotations.get("meta.helm.sh/release-name", "")
        return Controller("Helm", "app.kubernetes.io/managed-by: Helm" + (f", release {release}" if release else ""))
    for entry in _entries(obj):
        name = _CONTROLLER_MANAGERS.get(str(entry.get("manager", "")))
        if name:
            return Controller(name, f"field manager {entry.get('manager')}")
    if "app.kubernetes.io/instance" in labels:
        return Controller(
            "Argo CD", f"tracking label app.kubernetes.io/instance: {labels['app.kubernetes.io/instance']}"
        )
    return None
