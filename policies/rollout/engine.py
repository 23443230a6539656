"""The rollout engine: the step machine (snapshot, phases, analysis, promotion, rollback) and its
cluster writes.

People's controls, starting a rollout and the reconciler's selection are use cases in
`policies.services.rollouts`; they hand the engine its side effects on the rest of the system (audit
rows, notifications, the change's state, change windows) as an `Effects` value, so the engine imports
no service, view or API.

State lives on the `Rollout` row; `rollout_advance` executes the next due action of one rollout
under `select_for_update(skip_locked=True)` (one executor per rollout; a second worker skips it), and
the periodic reconciler (`rollouts_due`) finds every rollout whose `next_action_at` is due, so a lost
task or a killed worker only delays a rollout.

Cluster writes. Every write is a server-side apply with field manager `meshgate` and the
resourceVersion Meshgate last saw or wrote as precondition (`Rollout.observed`). Before each write
the live object is read: a resourceVersion that is not the expected one means someone else changed
the object, and the rollout pauses with the reason (nothing is overwritten) — unless the live object
already equals what this step writes (the step ran before and the worker died before recording it:
the step is then adopted, not repeated).
Ownership: seeded/imported objects are owned by other field managers (kubectl). Meshgate applies with
`force=True` AND the resourceVersion precondition: the precondition guarantees the live object is the
snapshot or Meshgate's own last write, so force only takes over fields other managers set before the
rollout; it never forces over an out-of-band change (that answers 409 and pauses the rollout).
Fields of Update managers (kubectl client-side apply, before-first-apply, kubectl edit) are taken
over as `kubectl apply --server-side` migrates them (`policies.rollout.ownership.apply_owned`); a
field another *Apply* manager co-owns survives, which the plan reports as a blocking finding before
approval, and the final verification makes the plan's own comparison (`held_differences`).

Idempotent steps: each step records a `RolloutEvent` with a unique `step_key`
(`apply:<phase>:<key>`, `analyze:<phase>:<interval>`, `gate:<phase>`, `promote`, `rollback`); a
step whose key is recorded is not executed again.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from integrations import kubernetes as kube
from integrations.kubernetes.exceptions import KubernetesError
from policies import selectors
from policies.choices import (
    AuditAction,
    ChangeState,
    DraftOperation,
    LiveState,
    NotificationEvent,
    RevisionSource,
    RolloutAuditAction,
    RolloutEventKind,
    RolloutState,
)
from policies.cluster import cluster_config
from policies.constants import DEFAULT_ANALYSIS  # noqa: F401 - shared with the use cases
from policies.models import (
    ChangeItem,
    ChangeRequest,
    Policy,
    PolicyDrift,
    PolicyRevision,
    Rollout,
    RolloutEvent,
)
from policies.normalize import content_hash, normalize_object
from policies.rollout import analysis as an
from policies.rollout import ownership, strategies, webhooks, writes
from policies.rollout.writes import OutOfBand

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Effects:
    """What the engine does to the rest of the system, supplied by the service that runs it.

    - `audit(action=, actor=, obj=, environment=, before=, after=)` appends an audit row;
    - `notify(rollout, event, subject, body, payload)` tells the owners;
    - `set_change_state(change, state, actor=, action=, after=)` moves the change (locked) to `state`;
    - `window_status(environment=, at=)` answers `.open`, `.next_opening`, `.reason`;
    - `absolute_url(path)` makes a link for webhooks.
    """

    audit: Callable[..., Any]
    notify: Callable[[Rollout, str, str, str, dict[str, Any]], None]
    set_change_state: Callable[..., Any]
    window_status: Callable[..., Any]
    absolute_url: Callable[[str], str]


def bind(rollout: Rollout, effects: Effects) -> Rollout:
    """Attaches the effects the engine's functions use while acting on this row."""
    rollout.engine_effects = effects
    return rollout


def effects_of(rollout: Rollout) -> Effects:
    effects = getattr(rollout, "engine_effects", None)
    if effects is None:
        raise RuntimeError(f"rollout {rollout.pk}: the engine was called without its effects (engine.bind)")
    return effects


TERMINAL = frozenset({RolloutState.COMPLETED, RolloutState.ROLLED_BACK, RolloutState.FAILED, RolloutState.ABORTED})
RETRY_SECONDS = 2
RETRY_CAP_SECONDS = 30
# The fields of the row a failed action puts back as they were when it started (the write record —
# observed, expected, owned, others — is saved after each confirmed write and stays).
ACTION_FIELDS = (
    "state",
    "step_index",
    "step_stage",
    "current_weight",
    "next_action_at",
    "phases",
    "analysis",
    "analysis_runs",
    "analysis_failures",
    "pause_reason",
    "resume_state",
    "rollback_reason",
    "finished_at",
    "snapshot",
)
WRITE_RECORD = ("observed", "expected", "owned", "others")


class LeaseLost(Exception):
    """Another executor took the rollout over (this one's lease lapsed): stop without recording."""


class Unverified(KubernetesError):
    """Live does not equal what a restore or promotion must leave; retried with backoff."""

    def __init__(self, message: str, *, live: dict[str, Any]):
        super().__init__(message)
        self.live = live


# --- helpers ------------------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return timezone.now()


def _items(change: ChangeRequest) -> list[ChangeItem]:
    return list(ChangeItem.objects.filter(change=change).order_by("position", "pk"))


def _strategy_items(change: ChangeRequest) -> list[strategies.Item]:
    return [
        strategies.Item(
            identity=strategies.identity_of(i.kind, i.namespace, i.name),
            kind=i.kind,
            namespace=i.namespace,
            name=i.name,
            operation=i.operation,
            content=None
            if i.operation == DraftOperation.DELETE
            else normalize_object(cast("dict[str, Any]", i.content)),
        )
        for i in _items(change)
    ]


def _rv(obj: dict[str, Any] | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion", "") if obj else ""


def _read(cfg: kube.ClusterConfig, identity: str) -> dict[str, Any] | None:
    return writes.read(cfg, identity)


def _same(live: dict[str, Any] | None, desired: dict[str, Any] | None) -> bool:
    return writes.live_matches(live, desired)


def record_event(
    rollout: Rollout, kind: str, message: str, *, data: dict | None = None, step_key: str | None = None
) -> RolloutEvent | None:
    """Records an event; with a step key, None when that step is recorded already (the unique key
    refuses the second one)."""
    try:
        with transaction.atomic():
            return RolloutEvent.objects.create(
                rollout=rollout, kind=kind, message=message[:1000], data=data or {}, step_key=step_key
            )
    except IntegrityError:
        return None


def _step_done(rollout: Rollout, step_key: str) -> bool:
    return RolloutEvent.objects.filter(rollout=rollout, step_key=step_key).exists()


def save_fields(rollout: Rollout, *fields: str) -> None:
    """Saves `fields` of the row. While the engine acts (it holds the row's lease) the update is
    conditional on the lease and renews it; `LeaseLost` when another executor took over."""
    rollout.updated_at = _now()
    token = getattr(rollout, "engine_lease", None)
    if not token:
        rollout.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
        return
    values = {name: getattr(rollout, name) for name in (*fields, "updated_at")}
    values["lease_expires_at"] = timezone.now() + dt.timedelta(seconds=settings.MESHGATE_ROLLOUT_LEASE_SECONDS)
    if not Rollout.objects.filter(pk=rollout.pk, lease_token=token).update(**values):
        raise LeaseLost(f"rollout {rollout.pk}: another executor holds it now")


def _audit(
    rollout: Rollout,
    action: str,
    *,
    actor: User | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    effects_of(rollout).audit(
        action=action, actor=actor, obj=rollout, environment=rollout.environment.name, before=before, after=after
    )


def _notify(rollout: Rollout, event: str, subject: str, body: str = "", payload: dict | None = None) -> None:
    effects_of(rollout).notify(
        rollout,
        event,
        subject,
        body or subject,
        {
            "change": rollout.change_id,
            "rollout": rollout.pk,
            "environment": rollout.environment.name,
            "state": rollout.state,
            "strategy": rollout.strategy,
            "weight": rollout.current_weight,
            **(payload or {}),
        },
    )


def _rollout_url(rollout: Rollout) -> str:
    try:
        return reverse("rollouts:detail", args=[rollout.pk])
    except NoReverseMatch:  # the pages are not wired in every configuration
        return ""


# --- webhooks -----------------------------------------------------------------------------------------


def _run_webhooks(rollout: Rollout, phase: str, *, key: str, extra: dict | None = None) -> list:
    """Calls the rollout's webhooks of `phase` that have not answered 2xx for `key` yet; each call is
    recorded on the timeline (a success as the keyed step `webhook:<key>:<name>`)."""
    results = []
    current = rollout.phases[rollout.step_index] if rollout.phases and rollout.step_index < len(rollout.phases) else {}
    payload = {
        "rollout": rollout.pk,
        "change": rollout.change_id,
        "title": rollout.change.title,
        "environment": rollout.environment.name,
        "strategy": rollout.strategy,
        "state": rollout.state,
        "step": rollout.step_index,
        "step_label": current.get("label", ""),
        "weight": rollout.current_weight,
        "url": effects_of(rollout).absolute_url(_rollout_url(rollout)),
        **(extra or {}),
    }
    due = [
        hook
        for hook in webhooks.webhooks_for(rollout.analysis, phase)
        if not _step_done(rollout, f"webhook:{key}:{hook.name}")
    ]
    if due:
        _renew(rollout)
    for result in webhooks.call_all(due, payload):  # side by side: the slowest one bounds the action
        done_key = f"webhook:{key}:{result.webhook.name}"
        results.append(result)
        record_event(
            rollout,
            RolloutEventKind.WEBHOOK,
            result.summary,
            data=result.as_dict(),
            step_key=done_key if result.ok else None,
        )
    return results


def _webhook_hold(rollout: Rollout, phase: str, now: dt.datetime) -> bool:
    """Runs the gating webhooks of `phase` (pre-rollout, promotion). True when one failed: the action
    is tried again after an analysis interval, and after `webhook_attempts` failures in a row the
    rollout pauses for a person."""
    results = _run_webhooks(rollout, phase, key=phase)
    failed = [r for r in results if not r.ok and r.webhook.gate]
    state = dict(rollout.analysis.get("state") or {})
    counts = dict(state.get("webhook_failures") or {})
    if not failed:
        if counts.pop(phase, None) is not None:
            rollout.analysis = {**rollout.analysis, "state": {**state, "webhook_failures": counts}}
            save_fields(rollout, "analysis")
        return False
    counts[phase] = counts.get(phase, 0) + 1
    rollout.analysis = {**rollout.analysis, "state": {**state, "webhook_failures": counts}}
    attempts = int(rollout.analysis.get("webhook_attempts") or webhooks.DEFAULT_ATTEMPTS)
    if counts[phase] >= attempts:
        rollout.next_action_at = now
        save_fields(rollout, "analysis", "next_action_at")
        pause(
            rollout,
            reason=f"{failed[0].summary}{f' ({failed[0].detail})' if failed[0].detail else ''} — "
            f"{counts[phase]} time(s) in a row; resume to call it again, or abort",
            data={"webhooks": [r.as_dict() for r in results]},
        )
    else:
        rollout.next_action_at = now + dt.timedelta(seconds=float(rollout.analysis["interval_seconds"]))
        save_fields(rollout, "analysis", "next_action_at")
    return True


def _set_change_state(rollout: Rollout, state: str, *, action: str, after: dict | None = None) -> None:
    effects_of(rollout).set_change_state(rollout.change, state, actor=None, action=action, after=after)


# --- advance ------------------------------------------------------------------------------------------


@dataclass
class AdvanceResult:
    rollout_id: int
    acted: bool
    state: str = ""
    next_in: float | None = None


def advance(
    *, rollout_id: int, effects: Effects, analyzer: an.Analyzer | None = None, now: dt.datetime | None = None
) -> AdvanceResult:
    """Executes the rollout's next due action, if it is due and no other executor holds it.

    The executor takes the row's lease (a conditional UPDATE, its own short transaction), then acts
    with no database transaction open: cluster calls, analysis queries and webhooks never hold a
    lock that requests (a GET of the rollout, an audited write elsewhere) wait behind. Each record the
    action makes is its own short write, conditional on the lease; a killed executor's lease lapses
    after `MESHGATE_ROLLOUT_LEASE_SECONDS` and the reconciler's next advance takes over, re-reading
    live before any write (adopting what the killed one wrote)."""
    now = now or _now()
    token = _claim(rollout_id, now)
    if token is None:
        row = Rollout.objects.filter(pk=rollout_id).only("state", "next_action_at").first()
        return AdvanceResult(rollout_id, False, row.state if row else "", _next_in(row, now) if row else None)
    try:
        with transaction.atomic():
            # Waits for a person's control committing right now (it holds the row), so the action
            # starts from what they decided.
            rollout = (
                Rollout.objects.select_for_update(of=("self",))
                .select_related("change__author", "environment")
                .get(pk=rollout_id)
            )
        if rollout.lease_token != token or not _due(rollout, now):
            return AdvanceResult(rollout_id, False, rollout.state, _next_in(rollout, now))
        bind(rollout, effects)
        rollout.engine_lease = token
        initial = {name: copy.deepcopy(getattr(rollout, name)) for name in ACTION_FIELDS}
        try:
            _act(rollout, analyzer=an.resolve_analyzer(analyzer), now=now)
        except LeaseLost:
            logger.warning("rollout %s: lease lost mid-action; the new executor carries on", rollout_id)
            return AdvanceResult(rollout_id, True, rollout.state, None)
        except OutOfBand as exc:
            _put_back(rollout, initial)
            pause(
                rollout,
                reason=str(exc),
                data={**exc.as_dict(), "written": _written_so_far(rollout), "out_of_band": True},
            )
        except (Unverified, writes.WriteUnconfirmed) as exc:
            _put_back(rollout, initial)
            _transient(rollout, f"not verified: {exc.message}", now, live=exc.live)
        except KubernetesError as exc:
            _put_back(rollout, initial)
            _transient(rollout, f"cluster error ({exc.status or 'unreachable'}): {exc.message}", now)
        except Exception as exc:
            logger.exception("rollout %s: action failed", rollout_id)
            _put_back(rollout, initial)
            _transient(rollout, f"unexpected error: {type(exc).__name__}: {exc}", now)
    except LeaseLost:
        return AdvanceResult(rollout_id, True, "", None)
    finally:
        Rollout.objects.filter(pk=rollout_id, lease_token=token).update(lease_token="", lease_expires_at=None)
    return AdvanceResult(rollout_id, True, rollout.state, _next_in(rollout, _now()))


def _due(rollout: Rollout, now: dt.datetime) -> bool:
    return rollout.state in RolloutState.due_states() and not (rollout.next_action_at and rollout.next_action_at > now)


def _claim(rollout_id: int, now: dt.datetime) -> str | None:
    """Takes the row's lease when the rollout is due and no live lease is held; the token, else None."""
    real = timezone.now()
    token = secrets.token_hex(16)
    taken = (
        Rollout.objects.filter(pk=rollout_id, state__in=RolloutState.due_states())
        .filter(Q(next_action_at__isnull=True) | Q(next_action_at__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=real))
        .update(
            lease_token=token, lease_expires_at=real + dt.timedelta(seconds=settings.MESHGATE_ROLLOUT_LEASE_SECONDS)
        )
    )
    return token if taken else None


def lease_held(rollout: Rollout) -> bool:
    """True while an executor acts on the rollout (people's controls wait for it)."""
    return (
        bool(rollout.lease_token) and rollout.lease_expires_at is not None and rollout.lease_expires_at > timezone.now()
    )


def _renew(rollout: Rollout) -> None:
    """Renews the lease before a cluster call (which may take up to the client's timeout)."""
    save_fields(rollout)


def _put_back(rollout: Rollout, initial: dict[str, Any]) -> None:
    """A failed action leaves no half-written record: the row's action fields go back to what they
    were when it started; what it wrote to the cluster (saved after each confirmed write) stays."""
    for name, value in initial.items():
        setattr(rollout, name, value)
    save_fields(rollout, *ACTION_FIELDS)


def _written_so_far(rollout: Rollout) -> list[dict[str, Any]]:
    """What Meshgate wrote in this rollout (the objects it owns, with the resourceVersion it left)."""
    return [{"object": identity, "resourceVersion": rollout.observed.get(identity, "")} for identity in rollout.owned]


def _next_in(rollout: Rollout, now: dt.datetime) -> float | None:
    if rollout.state not in RolloutState.due_states() or rollout.next_action_at is None:
        return None
    return max(0.0, (rollout.next_action_at - now).total_seconds())


def _transient(rollout: Rollout, message: str, now: dt.datetime, *, live: dict[str, Any] | None = None) -> None:
    """A failed action: retried with a growing delay (2, 4, 8 ... capped at 30 s). Past
    `MESHGATE_ROLLOUT_MAX_ATTEMPTS` a forward step rolls back; past `MESHGATE_ROLLOUT_VERIFY_ATTEMPTS` a
    restore ends `failed` with the live state shown (never `rolled_back` unverified)."""
    rollout.attempts += 1
    rolling_back = rollout.state == RolloutState.ROLLING_BACK
    limit = settings.MESHGATE_ROLLOUT_VERIFY_ATTEMPTS if rolling_back else settings.MESHGATE_ROLLOUT_MAX_ATTEMPTS
    record_event(
        rollout,
        RolloutEventKind.ERROR,
        message,
        data={"attempt": rollout.attempts, "limit": limit, **({"live": live} if live else {})},
    )
    if rollout.attempts < limit:
        delay = min(RETRY_CAP_SECONDS, RETRY_SECONDS * 2 ** (rollout.attempts - 1))
        rollout.next_action_at = now + dt.timedelta(seconds=delay)
        rollout.error = message
        save_fields(rollout, "attempts", "next_action_at", "error")
    elif rolling_back:
        finish_failed(rollout, f"rollback could not complete: {message}", live=live or _live_state(rollout))
    elif rollout.state == RolloutState.PENDING:
        finish_failed(rollout, f"could not read the live objects: {message}")
    else:
        begin_rollback(
            rollout, {"summary": message, "error": message, "step": rollout.step_index}, final=RolloutState.ROLLED_BACK
        )


def _live_state(rollout: Rollout) -> dict[str, Any]:
    """Best effort: every object the rollout touches as live holds it now (or the read error)."""
    cfg = cluster_config(rollout.environment)
    state: dict[str, Any] = {}
    for identity in rollout.observed:
        try:
            live = _read(cfg, identity)
            state[identity] = normalize_object(live) if live is not None else None
        except KubernetesError as exc:
            state[identity] = {"error": f"{exc.status or 'unreachable'}: {exc.message}"}
    return state


def _act(rollout: Rollout, *, analyzer: an.Analyzer, now: dt.datetime) -> None:
    if rollout.state == RolloutState.PENDING:
        _prepare(rollout, now)
    elif rollout.state == RolloutState.ROLLING_BACK:
        _restore(rollout, now)
    elif rollout.state == RolloutState.PROMOTING:
        _promote(rollout, now)
    elif rollout.step_stage == "analyze":
        _analyze(rollout, analyzer, now)
    else:
        _apply_phase(rollout, now)


def _prepare(rollout: Rollout, now: dt.datetime) -> None:
    """Reads and snapshots every live object the change touches, computes the phases (after the
    pre-rollout webhooks answered)."""
    if _webhook_hold(rollout, webhooks.PRE_ROLLOUT, now):
        return
    cfg = cluster_config(rollout.environment)
    items = _strategy_items(rollout.change)
    virtual_services = []
    for namespace in strategies.aux_namespaces(rollout.strategy, items):
        virtual_services += kube.list_objects(cfg, "VirtualService", namespace=namespace)
    identities = [i.identity for i in items] + strategies.aux_identities(rollout.strategy, items, virtual_services)
    snapshot = {identity: _read(cfg, identity) for identity in identities}
    moved = _moved_since_plan(rollout.change, snapshot, rollout.started_at)
    rollout.snapshot = snapshot
    rollout.observed = {identity: _rv(obj) for identity, obj in snapshot.items()}
    rollout.expected = {identity: _hash(obj) for identity, obj in snapshot.items()}
    rollout.others = {identity: writes.owners_of(obj) for identity, obj in snapshot.items()}
    phases, note = strategies.build_phases(
        strategy=rollout.strategy,
        items=items,
        snapshot=snapshot,
        steps=rollout.steps,
        gates=rollout.analysis.get("gates") or [],
    )
    rollout.phases = phases
    rollout.state, rollout.step_index, rollout.step_stage = RolloutState.RUNNING, 0, "apply"
    rollout.next_action_at, rollout.attempts, rollout.error = now, 0, ""
    save_fields(
        rollout,
        "snapshot",
        "observed",
        "expected",
        "others",
        "phases",
        "state",
        "step_index",
        "step_stage",
        "next_action_at",
        "attempts",
        "error",
    )
    record_event(
        rollout,
        RolloutEventKind.SNAPSHOT,
        f"snapshot of {len(snapshot)} object(s); {len(phases)} phase(s)",
        data={"observed": rollout.observed, "phases": [p["label"] for p in phases], "note": note},
        step_key="snapshot",
    )
    if moved:
        pause(
            rollout,
            reason=f"live objects moved since the approved plan: {', '.join(moved)}; "
            "review the new live state, then resume or abort",
            data={"moved": moved},
        )


def _moved_since_plan(change: ChangeRequest, snapshot: dict[str, Any], started_at: dt.datetime | None) -> list[str]:
    # The plan the approvals saw: one computed after the rollout started has the rollout's own moves
    # (and anything that happened meanwhile) in it.
    plan = selectors.change_latest_plan(change=change, before=started_at)
    if plan is None:
        return []
    moved = []
    by_item = selectors.plan_items_by_item(plan=plan)
    for item in _items(change):
        plan_item = by_item.get(item.pk)
        identity = strategies.identity_of(item.kind, item.namespace, item.name)
        if plan_item is None or plan_item.live_state not in ("present", "absent"):
            continue
        live = snapshot.get(identity)
        planned = plan_item.live_content if plan_item.live_state == "present" else None
        if (live is None) != (planned is None) or (live is not None and normalize_object(live) != planned):
            moved.append(identity)
    return moved


def _known(rollout: Rollout, identity: str) -> writes.Known:
    owners = (rollout.others or {}).get(identity)
    return writes.Known(rollout.observed.get(identity, ""), rollout.expected.get(identity, ""), owners)


def _write(
    rollout: Rollout, cfg: kube.ClusterConfig, identity: str, desired: dict[str, Any] | None, *, step_key: str
) -> bool:
    """Makes live == desired and confirms it (`policies.rollout.writes`); the record (observed,
    expected, owned, others) and an audit row are saved as soon as it is confirmed. False when live
    already was `desired` (a step that ran before a kill is adopted, not repeated)."""
    outcome = writes.write_confirmed(cfg, identity, desired, _known(rollout, identity), renew=lambda: _renew(rollout))
    _observe(rollout, identity, outcome.live)
    if outcome.written and desired is not None and identity not in rollout.owned:
        rollout.owned = [*rollout.owned, identity]
    save_fields(rollout, *WRITE_RECORD)
    if not outcome.written:
        return False
    _audit(
        rollout,
        RolloutAuditAction.ROLLOUT_WRITE,
        after={
            "object": identity,
            "operation": "delete" if desired is None else "apply",
            "step": step_key,
            "resourceVersion": rollout.observed.get(identity, ""),
            "confirmed_by": outcome.confirmed_by,
            "tries": outcome.tries,
            **({"errors": outcome.errors} if outcome.errors else {}),
        },
    )
    return True


def _hash(obj: dict[str, Any] | None) -> str:
    return writes.hash_of(obj)


def _observe(rollout: Rollout, identity: str, live: dict[str, Any] | None) -> None:
    rollout.observed = {**rollout.observed, identity: _rv(live)}
    rollout.expected = {**rollout.expected, identity: _hash(live)}
    rollout.others = {**(rollout.others or {}), identity: writes.owners_of(live)}


def _apply_phase(rollout: Rollout, now: dt.datetime) -> None:
    index = rollout.step_index
    phase = rollout.phases[index]
    step_key = f"apply:{index}:{phase['key']}"
    if phase.get("gate") and not _step_done(rollout, f"gate:{index}"):
        rollout.state, rollout.next_action_at = RolloutState.WAITING_GATE, None
        save_fields(rollout, "state", "next_action_at")
        record_event(
            rollout,
            RolloutEventKind.GATE,
            f"waiting for a person to confirm “{phase['label']}”",
            step_key=f"gate-wait:{index}",
        )
        _notify(
            rollout,
            NotificationEvent.ROLLOUT_PAUSED,
            f"Rollout of change #{rollout.change_id} waits for a person at “{phase['label']}”",
        )
        return
    if not _step_done(rollout, step_key):
        if _window_hold(rollout, index, now):
            return
        cfg = cluster_config(rollout.environment)
        written = [
            identity
            for identity, desired in phase["writes"]
            if _write(rollout, cfg, identity, desired, step_key=step_key)
        ]
    else:
        written = None
    # Every write of the phase is confirmed: the step's record, its notification and the next stage
    # are one short transaction.
    with transaction.atomic():
        if written is not None:
            record_event(
                rollout,
                RolloutEventKind.APPLY,
                f"{phase['label']}: {len(written)} write(s), confirmed",
                data={"written": written, "weight": phase["weight"]},
                step_key=step_key,
            )
            _notify(
                rollout,
                NotificationEvent.ROLLOUT_STEP,
                f"Rollout of change #{rollout.change_id}: {phase['label']}",
                payload={"phase": phase["key"]},
            )
        rollout.current_weight = phase["weight"]
        rollout.attempts = 0
        if phase.get("analyze", True):
            rollout.step_stage, rollout.analysis_runs = "analyze", 0
            rollout.next_action_at = now + dt.timedelta(seconds=float(rollout.analysis["interval_seconds"]))
        else:
            _next_phase(rollout, now)
        save_fields(
            rollout,
            "current_weight",
            "attempts",
            "step_stage",
            "analysis_runs",
            "next_action_at",
            "step_index",
            "state",
            *WRITE_RECORD,
        )


def _window_hold(rollout: Rollout, index: int, now: dt.datetime) -> bool:
    """A change window that closed during the rollout holds its next traffic step (never a rollback)
    until the window opens again; with no opening in sight, a person decides."""
    status = effects_of(rollout).window_status(environment=rollout.environment, at=now)
    if status.open:
        return False
    if status.next_opening is None:
        rollout.next_action_at = now
        save_fields(rollout, "next_action_at")
        pause(rollout, reason=f"the change window of {rollout.environment.name} is closed: {status.reason}")
        return True
    rollout.next_action_at = status.next_opening
    save_fields(rollout, "next_action_at")
    record_event(
        rollout,
        RolloutEventKind.GATE,
        f"waiting for the change window before “{rollout.phases[index]['label']}”: {status.reason}",
        data={"opens": status.next_opening.isoformat()},
        step_key=f"window:{index}:{status.next_opening.isoformat()}",
    )
    return True


def _workloads(rollout: Rollout, phase: dict | None = None) -> list[dict[str, str]]:
    """The workloads (namespace, service) the change routes to or selects, in a stable order: those
    of the objects `phase` writes (a wave analyses its own namespace), else those of the whole change."""
    if phase is not None and phase.get("writes"):
        pairs = [(i, rollout.snapshot.get(i)) for i, _ in phase["writes"]] + [(i, c) for i, c in phase["writes"]]
        found = _workloads_of(pairs)
        if found:
            return found
    pairs = sorted(rollout.snapshot.items(), key=lambda pair: pair[0])
    return _workloads_of(pairs + [(i, c) for p in rollout.phases for i, c in p["writes"]])


def _workloads_of(pairs: list[tuple[str, dict[str, Any] | None]]) -> list[dict[str, str]]:
    found = []
    for identity, obj in pairs:
        spec = (obj or {}).get("spec") or {}
        _, namespace, _ = strategies.split_identity(identity)
        hosts = [spec["host"]] if spec.get("host") else []
        for route in spec.get("http") or []:
            hosts += [(d.get("destination") or {}).get("host", "") for d in route.get("route") or []]
        app = ((spec.get("selector") or {}).get("matchLabels") or {}).get("app")
        for service in [h.split(".")[0] for h in hosts if h] + ([app] if app else []):
            entry = {"namespace": namespace, "service": service}
            if entry not in found:
                found.append(entry)
    return found


def _analyze(rollout: Rollout, analyzer: an.Analyzer, now: dt.datetime) -> None:
    """One analysis interval, then the run-level rule: wait, advance, roll back or pause.
    The interval's event (keyed) stores the outcome and the decision: a replay re-uses them."""
    index, run = rollout.step_index, rollout.analysis_runs
    phase = rollout.phases[index]
    step_key = f"analyze:{index}:{run}"
    existing = RolloutEvent.objects.filter(rollout=rollout, step_key=step_key).first()
    if existing is not None:
        data = existing.data
        outcome = an.Outcome(
            **{k: data.get(k) for k in ("verdict", "reason", "metric", "observed", "threshold")},
            metrics=data.get("metrics") or {},
        )
        action, decision_reason, state = data["action"], data["decision"], data["state"]
    else:
        context = an.AnalysisContext(
            rollout_id=rollout.pk,
            environment_id=rollout.environment_id,
            prometheus_url=rollout.environment.prometheus_url or "",
            strategy=rollout.strategy,
            phase={k: v for k, v in phase.items() if k != "writes"},
            interval_index=run,
            interval_seconds=float(rollout.analysis["interval_seconds"]),
            config=rollout.analysis,
            workloads=_workloads(rollout, phase),
            # analysis scope (canary analysis): the environment's cluster, and whether this is the last phase
            cluster_labels=rollout.environment.metrics_scope(),
            last_phase=index == len(rollout.phases) - 1,
            phases_left=len(rollout.phases) - 1 - index,
        )
        hooks = _run_webhooks(rollout, webhooks.STEP, key=f"step:{index}:{run}")
        _renew(rollout)
        outcome = an.evaluate(analyzer, context)
        failed = [r for r in hooks if not r.ok and r.webhook.gate]
        if failed:
            outcome = an.Outcome(
                an.FAIL,
                "; ".join(r.summary + (f" ({r.detail})" if r.detail else "") for r in failed),
                metrics=outcome.metrics,
                metric=f"webhook {failed[0].webhook.name}",
                observed=failed[0].status if failed[0].status is not None else failed[0].detail,
                threshold="2xx",
            )
        action, decision_reason, state = an.decide(rollout.analysis, rollout.analysis.get("state"), outcome)
        record_event(
            rollout,
            RolloutEventKind.ANALYSIS,
            f"{phase['label']}, interval {run + 1}: {outcome.verdict}"
            + (f" — {outcome.reason}" if outcome.reason else ""),
            data={**outcome.as_dict(), "action": action, "decision": decision_reason, "state": state},
            step_key=step_key,
        )
    rollout.analysis_runs = run + 1
    rollout.analysis_failures = int(state.get("failures", 0))
    if action == "advance":
        state = {**state, "successes_in_row": 0}  # each phase earns its own passing intervals
    rollout.analysis = {**rollout.analysis, "state": state}
    save_fields(rollout, "analysis_runs", "analysis_failures", "analysis")
    if action == "rollback":
        limit = int(rollout.analysis.get("failure_limit") or 1)
        reason = {
            "summary": f"{outcome.metric or 'analysis'} failed at {phase['label']}: {outcome.reason}".strip(),
            "metric": outcome.metric,
            "observed": outcome.observed,
            "threshold": outcome.threshold,
            "interval": run + 1,
            "phase": phase["key"],
            "weight": phase["weight"],
            "verdict": outcome.verdict,
            "failures": rollout.analysis_failures,
            "failure_limit": limit,
            "metrics": outcome.metrics,
            "decision": decision_reason,
        }
        if outcome.verdict == an.ERROR:
            reason["error"] = outcome.reason
        begin_rollback(rollout, reason, final=RolloutState.ROLLED_BACK)
        return
    if action == "pause":
        rollout.next_action_at = now  # resuming analyses again at once
        save_fields(rollout, "next_action_at")
        pause(rollout, reason=f"analysis at {phase['label']}: {decision_reason}", data={"outcome": outcome.as_dict()})
        return
    if action == "advance":
        _next_phase(rollout, now)
    else:
        rollout.next_action_at = now + dt.timedelta(seconds=float(rollout.analysis["interval_seconds"]))
    save_fields(rollout, "step_index", "step_stage", "state", "next_action_at", "analysis_runs")


def _next_phase(rollout: Rollout, now: dt.datetime) -> None:
    rollout.analysis_runs = 0
    rollout.next_action_at = now
    if rollout.step_index + 1 >= len(rollout.phases):
        rollout.state, rollout.step_stage = RolloutState.PROMOTING, "promote"
    else:
        rollout.step_index += 1
        rollout.step_stage = "apply"


def _promote(rollout: Rollout, now: dt.datetime) -> None:
    """Verifies live == approved for every item, records the new revisions, completes the change
    (after the promotion webhooks answered). `completed` is set only once verified."""
    if _webhook_hold(rollout, webhooks.PROMOTION, now):
        return
    cfg = cluster_config(rollout.environment)
    items = _items(rollout.change)
    lives, problem = verify_promotion(rollout, cfg, items)
    if problem:
        begin_rollback(rollout, {"summary": problem, "error": "verification failed"}, final=RolloutState.ROLLED_BACK)
        return
    with transaction.atomic():
        for item in items:
            _record_revision(rollout, item, lives[item.pk], now)
        rollout.state, rollout.current_weight, rollout.finished_at, rollout.next_action_at = (
            RolloutState.COMPLETED,
            100,
            now,
            None,
        )
        save_fields(rollout, "state", "current_weight", "finished_at", "next_action_at")
        record_event(
            rollout,
            RolloutEventKind.PROMOTED,
            "promoted: the live objects equal the approved revisions (verified)",
            data={"verified": {i: rollout.observed.get(i, "") for i in rollout.observed}},
            step_key="promote",
        )
        _set_change_state(
            rollout, ChangeState.COMPLETED, action=RolloutAuditAction.ROLLOUT_COMPLETED, after={"rollout": rollout.pk}
        )
        _notify(
            rollout,
            NotificationEvent.ROLLOUT_PROMOTED,
            f"Change #{rollout.change_id} “{rollout.change.title}” is live on {rollout.environment.name}",
        )


def approved_content(rollout: Rollout, item: ChangeItem) -> dict[str, Any] | None:
    """What the item must leave live: the approved content, plus the other writer's edits a person
    chose to continue on (`analysis.adopted`)."""
    if item.operation == DraftOperation.DELETE:
        return None
    identity = strategies.identity_of(item.kind, item.namespace, item.name)
    return apply_edits(item.content, ((rollout.analysis or {}).get("adopted") or {}).get(identity))


def verify_promotion(rollout: Rollout, cfg: kube.ClusterConfig, items: list[ChangeItem]) -> tuple[dict[int, Any], str]:
    """The promotion's verification, in one place: every item's live object equals what was approved
    and every temporary object is back to its snapshot. Returns the live objects by item and "" or
    the first problem; raises `OutOfBand` when another writer changed an object, a `KubernetesError`
    when the cluster cannot be read (retried)."""
    lives: dict[int, Any] = {}
    identities = set()
    for item in items:
        identity = strategies.identity_of(item.kind, item.namespace, item.name)
        identities.add(identity)
        live = _read(cfg, identity)
        # The same comparison the plan made before approval (policies.rollout.ownership).
        if ownership.held_differences(approved=approved_content(rollout, item), held=live):
            writes.classify(identity, live, _known(rollout, identity))
            return lives, (
                f"{identity} does not equal the approved content after promotion (differs at "
                f"{', '.join(writes.changed_paths(live, approved_content(rollout, item))[:8])})"
            )
        lives[item.pk] = live
    for identity in rollout.observed:
        if identity not in identities:
            live = _read(cfg, identity)
            if not _same(live, restore_target(rollout, identity)):
                writes.classify(identity, live, _known(rollout, identity))
                return lives, f"{identity} was not restored after promotion"
    return lives, ""


def _record_revision(rollout: Rollout, item: ChangeItem, live: dict[str, Any] | None, now: dt.datetime) -> None:
    policy = (
        item.policy
        or Policy.objects.filter(
            environment=rollout.environment, kind=item.kind, namespace=item.namespace, name=item.name
        ).first()
    )
    if policy is None:
        policy = Policy.objects.create(
            environment=rollout.environment, kind=item.kind, namespace=item.namespace, name=item.name
        )
    if live is None:
        policy.live_state, policy.live_resource_version, policy.live_seen_at = LiveState.ABSENT, "", now
        policy.save(update_fields=["live_state", "live_resource_version", "live_seen_at"])
        return
    content = normalize_object(live)
    current = policy.current_revision
    revision = PolicyRevision.objects.create(
        policy=policy,
        number=(current.number + 1) if current else 1,
        content=content,
        content_hash=content_hash(content),
        parent=current,
        author=rollout.change.author,
        source=RevisionSource.ROLLOUT,
        message=f"rolled out by change #{rollout.change_id}",
    )
    policy.current_revision, policy.live_state = revision, LiveState.PRESENT
    policy.live_resource_version, policy.live_seen_at = _rv(live), now
    policy.save(update_fields=["current_revision", "live_state", "live_resource_version", "live_seen_at"])
    PolicyDrift.objects.filter(policy=policy).delete()
    if item.policy_id is None:
        ChangeItem.objects.filter(pk=item.pk).update(policy=policy)
    effects_of(rollout).audit(
        action=AuditAction.POLICY_REVISION_CREATED,
        obj=policy,
        environment=rollout.environment.name,
        before={"revision": current.number} if current else None,
        after={
            "revision": revision.number,
            "content_hash": revision.content_hash,
            "source": RevisionSource.ROLLOUT,
            "rollout": rollout.pk,
        },
    )


# --- rollback -----------------------------------------------------------------------------------------


def begin_rollback(rollout: Rollout, reason: dict[str, Any], *, final: str, actor: User | None = None) -> None:
    """Records why first, then hands the restore to the next action."""
    rollout.rollback_reason = {**reason, "final_state": final}
    rollout.state, rollout.step_stage, rollout.next_action_at, rollout.attempts = (
        RolloutState.ROLLING_BACK,
        "rollback",
        _now(),
        0,
    )
    save_fields(rollout, "rollback_reason", "state", "step_stage", "next_action_at", "attempts")
    record_event(
        rollout, RolloutEventKind.ROLLBACK, f"rolling back: {reason.get('summary', '')}", data=rollout.rollback_reason
    )


def restore_target(rollout: Rollout, identity: str) -> dict[str, Any] | None:
    """What a rollback leaves for `identity`: its snapshot (absent when it did not exist), plus the
    other writer's edits a person chose to continue on."""
    snap = rollout.snapshot.get(identity)
    if snap is None:
        return None
    return apply_edits(normalize_object(snap), ((rollout.analysis or {}).get("adopted") or {}).get(identity))


def _restore(rollout: Rollout, now: dt.datetime) -> None:
    """Restores the snapshot (force only over Meshgate's own writes), verifies every object, finishes.

    `rolled_back` / `aborted` are recorded only once live is verified equal to the snapshot; an object
    another writer changed is left as they left it and the record says so (what was written, what was
    left, how live differs); an automatic rollback that has to leave one ends `failed`. A restore that
    cannot be verified raises `Unverified` (retried with backoff, then `failed` with live shown)."""
    cfg = cluster_config(rollout.environment)
    left, restored = [], []
    identities = list(rollout.observed)
    # Routes first, DestinationRules last: no route points at a subset that is gone.
    order = [i for i in identities if not i.startswith("DestinationRule/")] + [
        i for i in identities if i.startswith("DestinationRule/")
    ]
    for identity in order:
        target = restore_target(rollout, identity)
        try:
            wrote = _write(rollout, cfg, identity, target, step_key="rollback")
            restored.append(
                {"object": identity, "written": wrote, "resourceVersion": rollout.observed.get(identity, "")}
            )
        except OutOfBand as exc:
            live = _read(cfg, identity)
            left.append(
                {
                    "object": identity,
                    "why": str(exc),
                    "managers": exc.managers,
                    "differs_at": writes.changed_paths(live, target)[:20],
                    "live": normalize_object(live) if live is not None else None,
                }
            )
    mismatched = {}
    for entry in restored:
        live = _read(cfg, entry["object"])
        if not _same(live, restore_target(rollout, entry["object"])):
            mismatched[entry["object"]] = normalize_object(live) if live is not None else None
    if mismatched:
        raise Unverified(f"the snapshot could not be verified for {', '.join(mismatched)}", live=mismatched)
    assert rollout.rollback_reason is not None  # begin_rollback set it
    final = rollout.rollback_reason.get("final_state", RolloutState.ROLLED_BACK)
    written = [e["object"] for e in restored if e["written"]]
    if left and final != RolloutState.ABORTED:
        finish_failed(
            rollout,
            "rollback could not restore "
            + "; ".join(e["why"] for e in left)
            + (f"; restored and verified: {', '.join(e['object'] for e in restored)}" if restored else ""),
            live={e["object"]: e["live"] for e in left},
            data={"restored": restored, "left": left},
        )
        return
    with transaction.atomic():
        rollout.rollback_reason = {**rollout.rollback_reason, "left_out_of_band": left, "restored": restored}
        rollout.state, rollout.finished_at, rollout.next_action_at = final, now, None
        rollout.current_weight = 0
        save_fields(rollout, "rollback_reason", "state", "finished_at", "next_action_at", "current_weight")
        if final == RolloutState.ABORTED:
            change_state, action, kind = (
                ChangeState.ABORTED,
                RolloutAuditAction.ROLLOUT_ABORTED,
                RolloutEventKind.ABORTED,
            )
        else:
            change_state, action, kind = (
                ChangeState.ROLLED_BACK,
                RolloutAuditAction.ROLLOUT_ROLLED_BACK,
                RolloutEventKind.ROLLBACK,
            )
        message = (
            f"snapshot restored and verified for {', '.join(e['object'] for e in restored) or 'no object'}"
            f" ({len(written)} write(s){': ' + ', '.join(written) if written else ''})"
        )
        if left:
            message += "; left as another writer changed it (not restored): " + "; ".join(
                f"{e['object']} by {', '.join(e['managers']) or 'another writer'}, differs from the snapshot at "
                f"{', '.join(e['differs_at'][:5]) or '(nothing)'}"
                for e in left
            )
        record_event(rollout, kind, message, data={"left": left, "restored": restored}, step_key="rollback")
        _set_change_state(rollout, change_state, action=action, after={"reason": rollout.rollback_reason})
        _notify(
            rollout,
            NotificationEvent.ROLLOUT_ROLLED_BACK,
            f"Rollout of change #{rollout.change_id} “{rollout.change.title}” was "
            f"{'aborted' if final == RolloutState.ABORTED else 'rolled back'}",
            body=rollout.rollback_reason.get("summary", ""),
            payload={"reason": rollout.rollback_reason},
        )
    _run_webhooks(rollout, webhooks.ROLLBACK, key="rollback", extra={"reason": rollout.rollback_reason})


def finish_failed(
    rollout: Rollout, message: str, *, live: dict[str, Any] | None = None, data: dict[str, Any] | None = None
) -> None:
    """Ends the rollout `failed` with the truth: the message, and the live state when known. The
    owners are alerted at the highest priority (`priority: critical`)."""
    with transaction.atomic():
        rollout.state, rollout.error, rollout.finished_at, rollout.next_action_at = (
            RolloutState.FAILED,
            message[:4000],
            _now(),
            None,
        )
        if live is not None:
            rollout.rollback_reason = {**(rollout.rollback_reason or {}), "live_at_failure": live}
        save_fields(rollout, "state", "error", "finished_at", "next_action_at", "rollback_reason")
        record_event(
            rollout,
            RolloutEventKind.FAILED,
            message,
            data={**(data or {}), **({"live": live} if live else {})},
            step_key="failed",
        )
        _set_change_state(
            rollout, ChangeState.FAILED, action=RolloutAuditAction.ROLLOUT_FAILED, after={"error": message[:4000]}
        )
        _notify(
            rollout,
            NotificationEvent.ROLLOUT_FAILED,
            f"[CRITICAL] Rollout of change #{rollout.change_id} failed: live needs a person",
            body=message,
            payload={"priority": "critical", **({"live": live} if live else {})},
        )


def pause(rollout: Rollout, *, reason: str, data: dict | None = None, actor: User | None = None) -> None:
    rollout.resume_state = rollout.state if rollout.state != RolloutState.PAUSED else rollout.resume_state
    rollout.state, rollout.pause_reason, rollout.next_action_at = RolloutState.PAUSED, reason, None
    if data and data.get("out_of_band"):
        rollout.analysis = {**rollout.analysis, "out_of_band": data}
    with transaction.atomic():
        save_fields(rollout, "state", "pause_reason", "resume_state", "next_action_at", "analysis", *WRITE_RECORD)
        record_event(rollout, RolloutEventKind.PAUSED, f"paused: {reason}", data=data or {})
        _audit(rollout, RolloutAuditAction.ROLLOUT_PAUSED, actor=actor, after={"reason": reason})
        _notify(
            rollout, NotificationEvent.ROLLOUT_PAUSED, f"Rollout of change #{rollout.change_id} paused", body=reason
        )


# --- continuing on another writer's edit ----------------------------------------------------------------

DELETED = {"$deleted": True}


def edits_between(before: Any, after: Any, prefix: tuple = ()) -> dict[str, Any]:
    """The leaf edits (JSON path list -> new value, or `DELETED`) that turn `before` into `after`;
    lists of the same length are compared item by item, other lists are leaves."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: dict[str, Any] = {}
        for key in sorted(set(before) | set(after), key=str):
            if key not in after:
                found[json_path((*prefix, key))] = DELETED
            elif key not in before:
                found[json_path((*prefix, key))] = after[key]
            else:
                found.update(edits_between(before[key], after[key], (*prefix, key)))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = {}
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            found.update(edits_between(a, b, (*prefix, index)))
        return found
    return {} if before == after else {json_path(prefix): after}


def json_path(parts: tuple) -> str:
    return json.dumps(list(parts))


class EditNotApplicable(ValueError):
    pass


def apply_edits(obj: dict[str, Any] | None, edits: dict[str, Any] | None) -> dict[str, Any] | None:
    """`obj` with `edits` (from `edits_between`) applied; `EditNotApplicable` when a path is not there."""
    if obj is None or not edits:
        return obj
    result = copy.deepcopy(obj)
    for path, value in edits.items():
        parts = json.loads(path)
        if not parts:
            return copy.deepcopy(value)
        node: Any = result
        for part in parts[:-1]:
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                raise EditNotApplicable(f"{'.'.join(map(str, parts))} is not in the object")
        last = parts[-1]
        if isinstance(node, list) and (not isinstance(last, int) or last >= len(node)):
            raise EditNotApplicable(f"{'.'.join(map(str, parts))} is not in the object")
        if value == DELETED:
            if isinstance(node, dict):
                node.pop(last, None)
            else:
                raise EditNotApplicable(f"{'.'.join(map(str, parts))}: an item removed from a list")
        else:
            node[last] = copy.deepcopy(value)
    return result


def _overlaps(a: str, b: str) -> bool:
    pa, pb = json.loads(a), json.loads(b)
    return pa[: len(pb)] == pb or pb[: len(pa)] == pa


def continue_on_live(rollout: Rollout, lives: dict[str, dict[str, Any] | None]) -> list[str]:
    """Re-plans the rest of a rollout paused by another writer's edit on top of the edited live
    objects: the other writer's edits (live minus what Meshgate last left) are carried into every
    remaining phase, the promotion's verification and the rollback's target. Returns the paths that
    make it impossible (the edit touches fields the approved change sets: approvals do not cover
    that); [] when re-planned. The caller saves the row."""
    adopted = dict((rollout.analysis or {}).get("adopted") or {})
    plans: dict[str, dict[str, Any]] = {}
    for identity, live in lives.items():
        base = _last_left(rollout, identity)
        if live is None or base is None:
            return [f"{identity}: created or deleted by another writer"]
        edits = edits_between(base, normalize_object(live))
        changed_by_change = set()
        for phase in rollout.phases[rollout.step_index :]:
            for target, content in phase["writes"]:
                if target == identity and content is not None:
                    changed_by_change |= set(edits_between(base, content))
        clashes = [p for p in edits if any(_overlaps(p, c) for c in changed_by_change)]
        if clashes:
            return [f"{identity} at {'.'.join(map(str, json.loads(p)))}" for p in clashes]
        plans[identity] = edits
    try:
        for identity, edits in plans.items():
            for phase in rollout.phases[rollout.step_index :]:
                [apply_edits(c, edits) for t, c in phase["writes"] if t == identity]
            apply_edits(restore_target(rollout, identity), edits)
    except EditNotApplicable as exc:
        return [f"{identity}: {exc}"]
    for identity, edits in plans.items():
        for phase in rollout.phases[rollout.step_index :]:
            phase["writes"] = [[t, apply_edits(c, edits) if t == identity else c] for t, c in phase["writes"]]
        adopted[identity] = {**adopted.get(identity, {}), **edits}
        _observe(rollout, identity, lives[identity])
    rollout.analysis = {**rollout.analysis, "adopted": adopted}
    return []


def _last_left(rollout: Rollout, identity: str) -> dict[str, Any] | None:
    """The content Meshgate last left on `identity`: the last applied phase's write of it, else the
    snapshot."""
    for index in range(min(rollout.step_index, len(rollout.phases) - 1), -1, -1):
        if _step_done(rollout, f"apply:{index}:{rollout.phases[index]['key']}"):
            for target, content in rollout.phases[index]["writes"]:
                if target == identity:
                    return normalize_object(content) if content is not None else None
    snap = rollout.snapshot.get(identity)
    return normalize_object(snap) if snap is not None else None


# The names the rollout use cases (policies.services.rollouts) call.
now = _now
change_items = _items
strategy_items = _strategy_items
audit = _audit
notify = _notify
rollout_url = _rollout_url
rv_of = writes.rv_of
json_loads = json.loads


def read_live(rollout: Rollout, identity: str) -> dict[str, Any] | None:
    return _read(cluster_config(rollout.environment), identity)
