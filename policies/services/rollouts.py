"""The rollout engine: start, advance (one keyed action at a time), roll back, controls, drift.

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
import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, OperationalError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from integrations import kubernetes as kube
from integrations.kubernetes.exceptions import Conflict, KubernetesError, NotFound
from policies import selectors
from policies.choices import (
    ChangeState,
    DraftOperation,
    LiveState,
    NotificationEvent,
    RevisionSource,
    Role,
    RolloutAuditAction,
    RolloutEventKind,
    RolloutState,
    RolloutStrategy,
)
from policies.cluster import cluster_config
from policies.constants import DEFAULT_ANALYSIS  # re-exported: the default the use cases and the engine share
from policies.exceptions import ApplicationError, ConflictError, PermissionDeniedError
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
from policies.rollout import ownership, strategies, webhooks
from policies.services.audit import audit_record

logger = logging.getLogger(__name__)

RETRY_SECONDS = 2
MAX_ATTEMPTS = 3
TERMINAL = frozenset({RolloutState.COMPLETED, RolloutState.ROLLED_BACK, RolloutState.FAILED, RolloutState.ABORTED})
CONTROL_ROLES = frozenset({Role.APPROVER, Role.ADMIN})


class OutOfBand(Exception):
    def __init__(self, identity: str, expected: str, live: str):
        super().__init__(f"{identity} was changed outside Meshgate (resourceVersion {expected or 'absent'} "
                         f"expected, {live or 'absent'} live): nothing was overwritten")
        self.identity, self.expected, self.live = identity, expected, live


class RolloutError(ConflictError):
    code = "rollout_illegal_state"


# --- helpers ------------------------------------------------------------------------------------------

def _now() -> dt.datetime:
    return timezone.now()


def _items(change: ChangeRequest) -> list[ChangeItem]:
    return list(ChangeItem.objects.filter(change=change).order_by("position", "pk"))


def _strategy_items(change: ChangeRequest) -> list[strategies.Item]:
    return [
        strategies.Item(
            identity=strategies.identity_of(i.kind, i.namespace, i.name), kind=i.kind, namespace=i.namespace,
            name=i.name, operation=i.operation,
            content=None if i.operation == DraftOperation.DELETE else normalize_object(i.content),
        )
        for i in _items(change)
    ]


def _rv(obj: dict[str, Any] | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion", "") if obj else ""


def _read(cfg, identity: str) -> dict[str, Any] | None:
    kind, namespace, name = strategies.split_identity(identity)
    try:
        return kube.get_object(cfg, kind, namespace, name)
    except NotFound:
        return None


def _same(live: dict[str, Any] | None, desired: dict[str, Any] | None) -> bool:
    if live is None or desired is None:
        return live is None and desired is None
    return normalize_object(live) == normalize_object(desired)


def _event(rollout: Rollout, kind: str, message: str, *, data: dict | None = None,
           step_key: str | None = None) -> RolloutEvent | None:
    """Records an event; with a step key, None when that step is recorded already (the unique key
    refuses the second one)."""
    try:
        with transaction.atomic():
            return RolloutEvent.objects.create(rollout=rollout, kind=kind, message=message[:1000],
                                               data=data or {}, step_key=step_key)
    except IntegrityError:
        return None


def _step_done(rollout: Rollout, step_key: str) -> bool:
    return RolloutEvent.objects.filter(rollout=rollout, step_key=step_key).exists()


def _save(rollout: Rollout, *fields: str) -> None:
    rollout.updated_at = _now()
    rollout.save(update_fields=[*fields, "updated_at"])


def _audit(rollout: Rollout, action: str, *, actor=None, before=None, after=None) -> None:
    audit_record(action=action, actor=actor, obj=rollout, environment=rollout.environment.name,
                 before=before, after=after)


def _owner_teams(change: ChangeRequest):
    from policies.models import Team

    namespaces = ChangeItem.objects.filter(change=change).values("namespace")
    return list(Team.objects.filter(namespaces__environment=change.environment_id,
                                    namespaces__namespace__in=namespaces).distinct())


def _notify(rollout: Rollout, event: str, subject: str, body: str = "", payload: dict | None = None) -> None:
    from policies.services.notifications import notify

    change = rollout.change
    url = _rollout_url(rollout)
    notify(event=event, subject=subject, body=body or subject, url=url,
           payload={"change": change.pk, "rollout": rollout.pk, "environment": rollout.environment.name,
                    "state": rollout.state, "strategy": rollout.strategy, "weight": rollout.current_weight,
                    **(payload or {})},
           teams=_owner_teams(change), users=[change.author])


def _rollout_url(rollout: Rollout) -> str:
    try:
        return reverse("rollouts:detail", args=[rollout.pk])
    except NoReverseMatch:  # the pages are not wired in every configuration
        return ""


# --- webhooks -----------------------------------------------------------------------------------------

def _run_webhooks(rollout: Rollout, phase: str, *, key: str, extra: dict | None = None) -> list:
    """Calls the rollout's webhooks of `phase` that have not answered 2xx for `key` yet; each call is
    recorded on the timeline (a success as the keyed step `webhook:<key>:<name>`)."""
    from policies.services.notifications import _absolute

    results = []
    current = rollout.phases[rollout.step_index] if rollout.phases and rollout.step_index < len(rollout.phases) else {}
    payload = {"rollout": rollout.pk, "change": rollout.change_id, "title": rollout.change.title,
               "environment": rollout.environment.name, "strategy": rollout.strategy, "state": rollout.state,
               "step": rollout.step_index, "step_label": current.get("label", ""), "weight": rollout.current_weight,
               "url": _absolute(_rollout_url(rollout)), **(extra or {})}
    due = [hook for hook in webhooks.webhooks_for(rollout.analysis, phase)
           if not _step_done(rollout, f"webhook:{key}:{hook.name}")]
    for result in webhooks.call_all(due, payload):  # side by side: the slowest one bounds the action
        done_key = f"webhook:{key}:{result.webhook.name}"
        results.append(result)
        _event(rollout, RolloutEventKind.WEBHOOK, result.summary, data=result.as_dict(),
               step_key=done_key if result.ok else None)
        if result.ok and hasattr(rollout, "webhook_calls"):
            rollout.webhook_calls.append((done_key, result))
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
            _save(rollout, "analysis")
        return False
    counts[phase] = counts.get(phase, 0) + 1
    rollout.analysis = {**rollout.analysis, "state": {**state, "webhook_failures": counts}}
    attempts = int(rollout.analysis.get("webhook_attempts") or webhooks.DEFAULT_ATTEMPTS)
    if counts[phase] >= attempts:
        rollout.next_action_at = now
        _save(rollout, "analysis", "next_action_at")
        _pause(rollout, reason=f"{failed[0].summary}{f' ({failed[0].detail})' if failed[0].detail else ''} — "
                               f"{counts[phase]} time(s) in a row; resume to call it again, or abort",
               data={"webhooks": [r.as_dict() for r in results]})
    else:
        rollout.next_action_at = now + dt.timedelta(seconds=float(rollout.analysis["interval_seconds"]))
        _save(rollout, "analysis", "next_action_at")
    return True


def _set_change_state(change: ChangeRequest, state: str, *, actor=None, action: str, after: dict | None = None):
    from policies.services.changes import lock_change, set_state

    change = lock_change(change)
    if change.state != state:
        set_state(change, state, actor=actor, action=action, after=after)
    return change


# --- start --------------------------------------------------------------------------------------------

def rollout_start(
    *, change: ChangeRequest, actor: AbstractBaseUser | None = None, strategy: str | None = None,
    steps: Any = None, analysis: dict[str, Any] | None = None, gates: list[int] | None = None,
    now: dt.datetime | None = None,
) -> Rollout:
    """scheduled → rolling_out: creates the Rollout row (pending, due now). The window must be open and
    no item stale; `actor` None is the reconciler, a person must be an approver/admin of the owners.
    Options not given here come from the change's rollout plan (`ChangeRequest.rollout_options` over
    the defaults)."""
    from policies.services.rollout_options import rollout_options_effective
    from policies.services.windows import window_explain, window_is_open

    now = now or _now()
    planned = rollout_options_effective(change)
    strategy = strategy or planned["strategy"]
    steps = planned["steps"] if steps is None else steps
    analysis = planned["analysis"] if analysis is None else analysis
    gates = planned["gates"] if gates is None else gates
    if actor is not None and not _may_control_change(actor, change):
        raise PermissionDeniedError("only approvers or admins of the owning team can start this rollout")
    from policies.approval import item_is_stale

    # The same rule as review: a policy's current revision moved, or a policy this change creates
    # exists now.
    stale = [item.label for item in selectors.change_items(change=change) if item_is_stale(item)]
    if stale:
        raise RolloutError(f"change #{change.pk} is stale (rebase it first): {', '.join(stale)}",
                           extra={"state": change.state, "stale": stale})
    try:
        webhooks.parse_webhooks((analysis or {}).get("webhooks"), path="analysis.webhooks")
    except webhooks.WebhookConfigError as exc:
        raise ApplicationError(str(exc), extra={"field": exc.path}) from None
    items = _strategy_items(change)
    chosen = strategy or strategies.default_strategy([i.kind for i in items])
    if chosen not in RolloutStrategy.values:
        raise RolloutError(f"unknown strategy {chosen!r}", extra={"allowed": RolloutStrategy.values})
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update(of=("self",)).select_related("environment").get(pk=change.pk)
        if change.state != ChangeState.SCHEDULED:
            raise RolloutError(f"cannot start a rollout of a change in state {change.state}",
                               extra={"state": change.state})
        if change.scheduled_for and change.scheduled_for > now:
            raise RolloutError(f"change #{change.pk} is scheduled for {change.scheduled_for.isoformat()}",
                               extra={"state": change.state})
        if not window_is_open(environment=change.environment, at=now):
            raise RolloutError(f"the change window of {change.environment.name} is closed: "
                               f"{window_explain(environment=change.environment, at=now)}",
                               extra={"state": change.state})
        rollout = Rollout.objects.create(
            change=change, environment=change.environment, strategy=chosen,
            steps=strategies.normalize_steps(steps), analysis={**DEFAULT_ANALYSIS, **(analysis or {}),
                                                               "gates": list(gates or [])},
            state=RolloutState.PENDING, next_action_at=now, started_at=now,
        )
        _set_change_state(change, ChangeState.ROLLING_OUT, actor=actor, action=RolloutAuditAction.ROLLOUT_STARTED,
                          after={"rollout": rollout.pk, "strategy": chosen})
        _event(rollout, RolloutEventKind.STARTED, f"rollout started ({chosen})", data={"steps": rollout.steps},
               step_key="start")
        _notify(rollout, NotificationEvent.ROLLOUT_STARTED,
                f"Rollout of change #{change.pk} “{change.title}” started on {change.environment.name} ({chosen})")
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def _enqueue(rollout_id: int, countdown: float = 0) -> None:
    from policies.jobs import rollout_advance

    try:
        rollout_advance.apply_async((rollout_id,), countdown=max(0.0, countdown))
    except Exception:  # noqa: BLE001 - the reconciler picks it up when the broker is down
        logger.warning("could not enqueue rollout %s; the reconciler will pick it up", rollout_id)


# --- advance ------------------------------------------------------------------------------------------

@dataclass
class AdvanceResult:
    rollout_id: int
    acted: bool
    state: str = ""
    next_in: float | None = None


def rollout_advance(*, rollout_id: int, analyzer: an.Analyzer | None = None,
                    now: dt.datetime | None = None) -> AdvanceResult:
    """Executes the rollout's next due action, if it is due and no other executor holds it."""
    now = now or _now()
    with transaction.atomic():
        rollout = (Rollout.objects.select_for_update(skip_locked=True, of=("self",))
                   .select_related("change__author", "environment").filter(pk=rollout_id).first())
        if rollout is None:
            return AdvanceResult(rollout_id, False)
        if rollout.state not in RolloutState.due_states() or (rollout.next_action_at and rollout.next_action_at > now):
            return AdvanceResult(rollout_id, False, rollout.state, _next_in(rollout, now))
        rollout.cluster_writes, rollout.webhook_calls = [], []
        try:
            with transaction.atomic():  # a savepoint: a failed action leaves no half-written row
                _act(rollout, analyzer=an.resolve_analyzer(analyzer), now=now)
        except OutOfBand as exc:
            _keep_writes(rollout)
            _pause(rollout, reason=str(exc), data={"identity": exc.identity, "expected": exc.expected,
                                                   "live": exc.live})
        except KubernetesError as exc:
            _keep_writes(rollout)
            _transient(rollout, f"cluster error ({exc.status or 'unreachable'}): {exc.message}", now)
        except Exception as exc:
            logger.exception("rollout %s: action failed", rollout_id)
            _keep_writes(rollout)
            _transient(rollout, f"unexpected error: {type(exc).__name__}: {exc}", now)
    return AdvanceResult(rollout_id, True, rollout.state, _next_in(rollout, _now()))


def _next_in(rollout: Rollout, now: dt.datetime) -> float | None:
    if rollout.state not in RolloutState.due_states() or rollout.next_action_at is None:
        return None
    return max(0.0, (rollout.next_action_at - now).total_seconds())


def _transient(rollout: Rollout, message: str, now: dt.datetime) -> None:
    """A failed action: retried with a growing delay, then (MAX_ATTEMPTS) rolled back or failed."""
    rollout.attempts += 1
    _event(rollout, RolloutEventKind.ERROR, message, data={"attempt": rollout.attempts})
    if rollout.attempts < MAX_ATTEMPTS:
        rollout.next_action_at = now + dt.timedelta(seconds=RETRY_SECONDS * rollout.attempts)
        rollout.error = message
        _save(rollout, "attempts", "next_action_at", "error")
    elif rollout.state == RolloutState.ROLLING_BACK:
        _finish_failed(rollout, f"rollback could not complete: {message}")
    elif rollout.state == RolloutState.PENDING:
        _finish_failed(rollout, f"could not read the live objects: {message}")
    else:
        _begin_rollback(rollout, {"summary": message, "error": message, "step": rollout.step_index},
                        final=RolloutState.ROLLED_BACK)


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
    phases, note = strategies.build_phases(strategy=rollout.strategy, items=items, snapshot=snapshot,
                                           steps=rollout.steps, gates=rollout.analysis.get("gates") or [])
    rollout.phases = phases
    rollout.state, rollout.step_index, rollout.step_stage = RolloutState.RUNNING, 0, "apply"
    rollout.next_action_at, rollout.attempts, rollout.error = now, 0, ""
    _save(rollout, "snapshot", "observed", "expected", "phases", "state", "step_index", "step_stage", "next_action_at",
          "attempts", "error")
    _event(rollout, RolloutEventKind.SNAPSHOT, f"snapshot of {len(snapshot)} object(s); {len(phases)} phase(s)",
           data={"observed": rollout.observed, "phases": [p["label"] for p in phases], "note": note},
           step_key="snapshot")
    if moved:
        _pause(rollout, reason=f"live objects moved since the approved plan: {', '.join(moved)}; "
                               "review the new live state, then resume or abort", data={"moved": moved})


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


def _write(rollout: Rollout, cfg, identity: str, desired: dict[str, Any] | None, *, step_key: str) -> bool:
    """Makes live == desired under the resourceVersion precondition. False when live already was.
    The caller saves the row's observed / expected / owned fields."""
    live = _read(cfg, identity)
    live_rv, expected = _rv(live), rollout.observed.get(identity, "")
    if live_rv != expected:
        if _same(live, desired):  # this very step ran before the worker died: adopt it
            _observe(rollout, identity, live)
            return False
        if live is not None and _hash(live) == rollout.expected.get(identity):
            # Same content, new resourceVersion: Meshgate's ownership apply whose record was lost
            # (a killed worker), or a no-op apply. Nothing to overwrite: continue from it.
            _observe(rollout, identity, live)
            live_rv = _rv(live)
        else:
            raise OutOfBand(identity, expected, live_rv)
    if _same(live, desired):
        return False
    kind, namespace, name = strategies.split_identity(identity)
    try:
        if desired is None:
            kube.delete_object(cfg, kind, namespace, name, resource_version=live_rv or None)
            _observe(rollout, identity, None)
        else:
            body = copy.deepcopy(desired)
            if live is not None:
                body.setdefault("metadata", {})["resourceVersion"] = live_rv
            # force: the precondition guarantees live is what Meshgate saw (snapshot or its own write),
            # so forcing only takes over fields other managers (kubectl, an import) set before;
            # the Update managers' fields are migrated as `kubectl apply --server-side` does.
            written = ownership.apply_owned(cfg, body, live=live).obj
            _observe(rollout, identity, written)
            if identity not in rollout.owned:
                rollout.owned = [*rollout.owned, identity]
    except Conflict:
        again = _read(cfg, identity)
        raise OutOfBand(identity, rollout.observed.get(identity, ""), _rv(again)) from None
    # The row (observed / expected / owned) is saved by the caller at the end of its action, in the
    # same transaction; a failure in between is `_keep_writes`'.
    after = {"object": identity, "operation": "delete" if desired is None else "apply", "step": step_key,
             "resourceVersion": rollout.observed.get(identity, "")}
    _audit(rollout, RolloutAuditAction.ROLLOUT_WRITE, after=after)
    if hasattr(rollout, "cluster_writes"):
        rollout.cluster_writes.append({**after, "hash": rollout.expected.get(identity, "")})
    return True


def _keep_writes(rollout: Rollout) -> None:
    """The action failed after writing to the cluster, and its savepoint took the row's record of
    those writes with it. Re-read the row, then keep what the cluster now holds: the
    resourceVersions Meshgate wrote (so they are not mistaken for out-of-band changes) and an audit
    row per write."""
    writes = getattr(rollout, "cluster_writes", [])
    rollout.refresh_from_db()
    for entry in writes:
        identity = entry["object"]
        rollout.observed = {**rollout.observed, identity: entry["resourceVersion"]}
        rollout.expected = {**rollout.expected, identity: entry["hash"]}
        if entry["operation"] == "apply" and identity not in rollout.owned:
            rollout.owned = [*rollout.owned, identity]
        _audit(rollout, RolloutAuditAction.ROLLOUT_WRITE,
               after={k: v for k, v in entry.items() if k != "hash"} | {"action_failed": True})
    if writes:
        _save(rollout, "observed", "expected", "owned")
    rollout.cluster_writes = []
    # Webhooks that answered are not called again when the action is retried.
    for done_key, result in getattr(rollout, "webhook_calls", []):
        _event(rollout, RolloutEventKind.WEBHOOK, result.summary, data=result.as_dict(), step_key=done_key)
    rollout.webhook_calls = []


def _hash(obj: dict[str, Any] | None) -> str:
    return content_hash(normalize_object(obj)) if obj is not None else ""


def _observe(rollout: Rollout, identity: str, live: dict[str, Any] | None) -> None:
    rollout.observed = {**rollout.observed, identity: _rv(live)}
    rollout.expected = {**rollout.expected, identity: _hash(live)}


def _apply_phase(rollout: Rollout, now: dt.datetime) -> None:
    index = rollout.step_index
    phase = rollout.phases[index]
    step_key = f"apply:{index}:{phase['key']}"
    if phase.get("gate") and not _step_done(rollout, f"gate:{index}"):
        rollout.state, rollout.next_action_at = RolloutState.WAITING_GATE, None
        _save(rollout, "state", "next_action_at")
        _event(rollout, RolloutEventKind.GATE, f"waiting for a person to confirm “{phase['label']}”",
               step_key=f"gate-wait:{index}")
        _notify(rollout, NotificationEvent.ROLLOUT_PAUSED,
                f"Rollout of change #{rollout.change_id} waits for a person at “{phase['label']}”")
        return
    if not _step_done(rollout, step_key):
        if _window_hold(rollout, index, now):
            return
        cfg = cluster_config(rollout.environment)
        written = [identity for identity, desired in phase["writes"]
                   if _write(rollout, cfg, identity, desired, step_key=step_key)]
        _event(rollout, RolloutEventKind.APPLY, f"{phase['label']}: {len(written)} write(s)",
               data={"written": written, "weight": phase["weight"]}, step_key=step_key)
        _notify(rollout, NotificationEvent.ROLLOUT_STEP,
                f"Rollout of change #{rollout.change_id}: {phase['label']}", payload={"phase": phase["key"]})
    rollout.current_weight = phase["weight"]
    rollout.attempts = 0
    if phase.get("analyze", True):
        rollout.step_stage, rollout.analysis_runs = "analyze", 0
        rollout.next_action_at = now + dt.timedelta(seconds=float(rollout.analysis["interval_seconds"]))
    else:
        _next_phase(rollout, now)
    _save(rollout, "current_weight", "attempts", "step_stage", "analysis_runs", "next_action_at", "step_index",
          "state", "observed", "expected", "owned")


def _window_hold(rollout: Rollout, index: int, now: dt.datetime) -> bool:
    """A change window that closed during the rollout holds its next traffic step (never a rollback)
    until the window opens again; with no opening in sight, a person decides."""
    from policies.services.windows import window_status

    status = window_status(environment=rollout.environment, at=now)
    if status.open:
        return False
    if status.next_opening is None:
        rollout.next_action_at = now
        _save(rollout, "next_action_at")
        _pause(rollout, reason=f"the change window of {rollout.environment.name} is closed: {status.reason}")
        return True
    rollout.next_action_at = status.next_opening
    _save(rollout, "next_action_at")
    _event(rollout, RolloutEventKind.GATE, f"waiting for the change window before “{rollout.phases[index]['label']}”: "
           f"{status.reason}", data={"opens": status.next_opening.isoformat()},
           step_key=f"window:{index}:{status.next_opening.isoformat()}")
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


def _workloads_of(pairs) -> list[dict[str, str]]:
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
        outcome = an.Outcome(**{k: data.get(k) for k in ("verdict", "reason", "metric", "observed", "threshold")},
                             metrics=data.get("metrics") or {})
        action, decision_reason, state = data["action"], data["decision"], data["state"]
    else:
        context = an.AnalysisContext(
            rollout_id=rollout.pk, environment_id=rollout.environment_id,
            prometheus_url=rollout.environment.prometheus_url or "", strategy=rollout.strategy,
            phase={k: v for k, v in phase.items() if k != "writes"}, interval_index=run,
            interval_seconds=float(rollout.analysis["interval_seconds"]), config=rollout.analysis,
            workloads=_workloads(rollout, phase),
            # analysis scope (canary analysis): the environment's cluster, and whether this is the last phase
            cluster_labels=rollout.environment.metrics_scope(), last_phase=index == len(rollout.phases) - 1,
            phases_left=len(rollout.phases) - 1 - index,
        )
        hooks = _run_webhooks(rollout, webhooks.STEP, key=f"step:{index}:{run}")
        outcome = an.evaluate(analyzer, context)
        failed = [r for r in hooks if not r.ok and r.webhook.gate]
        if failed:
            outcome = an.Outcome(
                an.FAIL, "; ".join(r.summary + (f" ({r.detail})" if r.detail else "") for r in failed),
                metrics=outcome.metrics, metric=f"webhook {failed[0].webhook.name}",
                observed=failed[0].status if failed[0].status is not None else failed[0].detail, threshold="2xx")
        action, decision_reason, state = an.decide(rollout.analysis, rollout.analysis.get("state"), outcome)
        _event(rollout, RolloutEventKind.ANALYSIS, f"{phase['label']}, interval {run + 1}: {outcome.verdict}"
               + (f" — {outcome.reason}" if outcome.reason else ""),
               data={**outcome.as_dict(), "action": action, "decision": decision_reason, "state": state},
               step_key=step_key)
    rollout.analysis_runs = run + 1
    rollout.analysis_failures = int(state.get("failures", 0))
    if action == "advance":
        state = {**state, "successes_in_row": 0}  # each phase earns its own passing intervals
    rollout.analysis = {**rollout.analysis, "state": state}
    _save(rollout, "analysis_runs", "analysis_failures", "analysis")
    if action == "rollback":
        limit = int(rollout.analysis.get("failure_limit") or 1)
        reason = {
            "summary": f"{outcome.metric or 'analysis'} failed at {phase['label']}: {outcome.reason}".strip(),
            "metric": outcome.metric, "observed": outcome.observed, "threshold": outcome.threshold,
            "interval": run + 1, "phase": phase["key"], "weight": phase["weight"], "verdict": outcome.verdict,
            "failures": rollout.analysis_failures, "failure_limit": limit, "metrics": outcome.metrics,
            "decision": decision_reason,
        }
        if outcome.verdict == an.ERROR:
            reason["error"] = outcome.reason
        _begin_rollback(rollout, reason, final=RolloutState.ROLLED_BACK)
        return
    if action == "pause":
        rollout.next_action_at = now  # resuming analyses again at once
        _save(rollout, "next_action_at")
        _pause(rollout, reason=f"analysis at {phase['label']}: {decision_reason}", data={"outcome": outcome.as_dict()})
        return
    if action == "advance":
        _next_phase(rollout, now)
    else:
        rollout.next_action_at = now + dt.timedelta(seconds=float(rollout.analysis["interval_seconds"]))
    _save(rollout, "step_index", "step_stage", "state", "next_action_at", "analysis_runs")


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
    (after the promotion webhooks answered)."""
    if _webhook_hold(rollout, webhooks.PROMOTION, now):
        return
    cfg = cluster_config(rollout.environment)
    items = _items(rollout.change)
    lives = {}
    for item in items:
        identity = strategies.identity_of(item.kind, item.namespace, item.name)
        live = _read(cfg, identity)
        desired = None if item.operation == DraftOperation.DELETE else item.content
        # The same comparison the plan made before approval (policies.rollout.ownership).
        if ownership.held_differences(approved=desired, held=live):
            if _rv(live) != rollout.observed.get(identity, ""):
                raise OutOfBand(identity, rollout.observed.get(identity, ""), _rv(live))
            _begin_rollback(rollout, {"summary": f"{identity} does not equal the approved content after promotion",
                                      "error": "verification failed"}, final=RolloutState.ROLLED_BACK)
            return
        lives[item.pk] = live
    for identity in rollout.observed:
        if identity not in {strategies.identity_of(i.kind, i.namespace, i.name) for i in items}:
            live = _read(cfg, identity)
            if not _same(live, rollout.snapshot.get(identity)):
                _begin_rollback(rollout, {"summary": f"{identity} was not restored after promotion",
                                          "error": "verification failed"}, final=RolloutState.ROLLED_BACK)
                return
    for item in items:
        _record_revision(rollout, item, lives[item.pk], now)
    rollout.state, rollout.current_weight, rollout.finished_at, rollout.next_action_at = (
        RolloutState.COMPLETED, 100, now, None)
    _save(rollout, "state", "current_weight", "finished_at", "next_action_at")
    _event(rollout, RolloutEventKind.PROMOTED, "promoted: the live objects equal the approved revisions",
           step_key="promote")
    _set_change_state(rollout.change, ChangeState.COMPLETED, action=RolloutAuditAction.ROLLOUT_COMPLETED,
                      after={"rollout": rollout.pk})
    _notify(rollout, NotificationEvent.ROLLOUT_PROMOTED,
            f"Change #{rollout.change_id} “{rollout.change.title}” is live on {rollout.environment.name}")


def _record_revision(rollout: Rollout, item: ChangeItem, live: dict[str, Any] | None, now: dt.datetime) -> None:
    policy = item.policy or Policy.objects.filter(
        environment=rollout.environment, kind=item.kind, namespace=item.namespace, name=item.name).first()
    if policy is None:
        policy = Policy.objects.create(environment=rollout.environment, kind=item.kind, namespace=item.namespace,
                                       name=item.name)
    if live is None:
        policy.live_state, policy.live_resource_version, policy.live_seen_at = LiveState.ABSENT, "", now
        policy.save(update_fields=["live_state", "live_resource_version", "live_seen_at"])
        return
    content = normalize_object(live)
    current = policy.current_revision
    revision = PolicyRevision.objects.create(
        policy=policy, number=(current.number + 1) if current else 1, content=content,
        content_hash=content_hash(content), parent=current, author=rollout.change.author,
        source=RevisionSource.ROLLOUT, message=f"rolled out by change #{rollout.change_id}",
    )
    policy.current_revision, policy.live_state = revision, LiveState.PRESENT
    policy.live_resource_version, policy.live_seen_at = _rv(live), now
    policy.save(update_fields=["current_revision", "live_state", "live_resource_version", "live_seen_at"])
    PolicyDrift.objects.filter(policy=policy).delete()
    if item.policy_id is None:
        ChangeItem.objects.filter(pk=item.pk).update(policy=policy)
    from policies.choices import AuditAction

    audit_record(action=AuditAction.POLICY_REVISION_CREATED, obj=policy, environment=rollout.environment.name,
                 before={"revision": current.number} if current else None,
                 after={"revision": revision.number, "content_hash": revision.content_hash,
                        "source": RevisionSource.ROLLOUT, "rollout": rollout.pk})


# --- rollback -----------------------------------------------------------------------------------------

def _begin_rollback(rollout: Rollout, reason: dict[str, Any], *, final: str, actor=None) -> None:
    """Records why first, then hands the restore to the next action."""
    rollout.rollback_reason = {**reason, "final_state": final}
    rollout.state, rollout.step_stage, rollout.next_action_at, rollout.attempts = (
        RolloutState.ROLLING_BACK, "rollback", _now(), 0)
    _save(rollout, "rollback_reason", "state", "step_stage", "next_action_at", "attempts")
    _event(rollout, RolloutEventKind.ROLLBACK, f"rolling back: {reason.get('summary', '')}",
           data=rollout.rollback_reason)


def _restore(rollout: Rollout, now: dt.datetime) -> None:
    """Restores the snapshot (force only over Meshgate's own writes), verifies, finishes."""
    cfg = cluster_config(rollout.environment)
    left = []
    identities = list(rollout.observed)
    # Routes first, DestinationRules last: no route points at a subset that is gone.
    order = [i for i in identities if not i.startswith("DestinationRule/")] + \
            [i for i in identities if i.startswith("DestinationRule/")]
    for identity in order:
        snap = rollout.snapshot.get(identity)
        desired = normalize_object(snap) if snap is not None else None
        try:
            _write(rollout, cfg, identity, desired, step_key="rollback")
        except OutOfBand as exc:
            left.append({"object": identity, "why": str(exc)})
    mismatched = []
    for identity in order:
        if any(entry["object"] == identity for entry in left):
            continue
        if not _same(_read(cfg, identity), rollout.snapshot.get(identity)):
            mismatched.append(identity)
    final = rollout.rollback_reason.get("final_state", RolloutState.ROLLED_BACK)
    _save(rollout, "observed", "expected", "owned")
    if mismatched:
        _finish_failed(rollout, f"the snapshot could not be verified for {', '.join(mismatched)}")
        return
    rollout.rollback_reason = {**rollout.rollback_reason, "left_out_of_band": left}
    rollout.state, rollout.finished_at, rollout.next_action_at = final, now, None
    rollout.current_weight = 0
    _save(rollout, "rollback_reason", "state", "finished_at", "next_action_at", "current_weight")
    if final == RolloutState.ABORTED:
        change_state, action, kind = ChangeState.ABORTED, RolloutAuditAction.ROLLOUT_ABORTED, RolloutEventKind.ABORTED
    else:
        change_state, action, kind = (ChangeState.ROLLED_BACK, RolloutAuditAction.ROLLOUT_ROLLED_BACK,
                                      RolloutEventKind.ROLLBACK)
    _event(rollout, kind, "snapshot restored and verified" + (
        f"; left alone (changed outside Meshgate): {', '.join(e['object'] for e in left)}" if left else ""),
        data={"left": left}, step_key="rollback")
    _set_change_state(rollout.change, change_state, action=action, after={"reason": rollout.rollback_reason})
    _run_webhooks(rollout, webhooks.ROLLBACK, key="rollback", extra={"reason": rollout.rollback_reason})
    _notify(rollout, NotificationEvent.ROLLOUT_ROLLED_BACK,
            f"Rollout of change #{rollout.change_id} “{rollout.change.title}” was "
            f"{'aborted' if final == RolloutState.ABORTED else 'rolled back'}",
            body=rollout.rollback_reason.get("summary", ""), payload={"reason": rollout.rollback_reason})


def _finish_failed(rollout: Rollout, message: str) -> None:
    rollout.state, rollout.error, rollout.finished_at, rollout.next_action_at = (
        RolloutState.FAILED, message, _now(), None)
    _save(rollout, "state", "error", "finished_at", "next_action_at")
    _event(rollout, RolloutEventKind.FAILED, message, step_key="failed")
    _set_change_state(rollout.change, ChangeState.FAILED, action=RolloutAuditAction.ROLLOUT_FAILED,
                      after={"error": message})
    _notify(rollout, NotificationEvent.ROLLOUT_FAILED, f"Rollout of change #{rollout.change_id} failed",
            body=message)


def _pause(rollout: Rollout, *, reason: str, data: dict | None = None, actor=None) -> None:
    rollout.resume_state = rollout.state if rollout.state != RolloutState.PAUSED else rollout.resume_state
    rollout.state, rollout.pause_reason, rollout.next_action_at = RolloutState.PAUSED, reason, None
    _save(rollout, "state", "pause_reason", "resume_state", "next_action_at", "observed", "expected", "owned")
    _event(rollout, RolloutEventKind.PAUSED, f"paused: {reason}", data=data or {})
    _audit(rollout, RolloutAuditAction.ROLLOUT_PAUSED, actor=actor, after={"reason": reason})
    _notify(rollout, NotificationEvent.ROLLOUT_PAUSED, f"Rollout of change #{rollout.change_id} paused",
            body=reason)


# --- controls (people) ----------------------------------------------------------------------------------

def user_may_control(*, user: AbstractBaseUser, rollout: Rollout) -> bool:
    """Approvers and admins of every team owning a namespace the change touches, or platform admins."""
    return _may_control_change(user, rollout.change)


def _may_control_change(user: AbstractBaseUser, change: ChangeRequest) -> bool:
    if not user.is_authenticated:
        return False
    if selectors.user_is_admin(user):
        return True
    namespaces = {i.namespace for i in _items(change)}
    return bool(namespaces) and all(
        selectors.user_role_for_namespace(user=user, environment=change.environment, namespace=ns) in CONTROL_ROLES
        for ns in namespaces)


def _locked_for(actor: AbstractBaseUser, rollout: Rollout, allowed: set[str], verb: str) -> Rollout:
    try:
        rollout = (Rollout.objects.select_for_update(nowait=True, of=("self",))
                   .select_related("change", "environment").get(pk=rollout.pk))
    except OperationalError:
        raise RolloutError(f"the engine is acting on this rollout right now; {verb} it again in a moment",
                           extra={"state": rollout.state}) from None
    if not user_may_control(user=actor, rollout=rollout):
        raise PermissionDeniedError(f"only approvers or admins of the owning team can {verb} this rollout")
    if rollout.state not in allowed:
        raise RolloutError(f"cannot {verb} a rollout that is {rollout.state}",
                           extra={"state": rollout.state, "allowed_states": sorted(allowed)})
    return rollout


def rollout_pause(*, actor: AbstractBaseUser, rollout: Rollout, reason: str = "") -> Rollout:
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.PENDING, RolloutState.RUNNING,
                                               RolloutState.WAITING_GATE}, "pause")
        _pause(rollout, reason=f"paused by {actor.get_username()}" + (f": {reason}" if reason else ""), actor=actor)
    return rollout


def rollout_resume(*, actor: AbstractBaseUser, rollout: Rollout) -> Rollout:
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.PAUSED}, "resume")
        rollout.state = rollout.resume_state or RolloutState.RUNNING
        if rollout.state == RolloutState.WAITING_GATE:
            rollout.next_action_at = None
        else:
            rollout.next_action_at = _now()
        rollout.pause_reason, rollout.resume_state, rollout.attempts = "", "", 0
        # A person looked: the analysis' no-data / inconclusive streaks start again.
        state = {**(rollout.analysis.get("state") or {}), "no_data_in_row": 0, "inconclusive_in_row": 0,
                 "webhook_failures": {}}
        rollout.analysis = {**rollout.analysis, "state": state}
        _save(rollout, "state", "next_action_at", "pause_reason", "resume_state", "attempts", "analysis")
        _event(rollout, RolloutEventKind.RESUMED, f"resumed by {actor.get_username()}")
        _audit(rollout, RolloutAuditAction.ROLLOUT_RESUMED, actor=actor, after={"state": rollout.state})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_abort(*, actor: AbstractBaseUser, rollout: Rollout, reason: str = "") -> Rollout:
    """A person stops the rollout: the snapshot is restored, the change ends `aborted`."""
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, set(RolloutState.active()) - {RolloutState.ROLLING_BACK}, "abort")
        summary = f"aborted by {actor.get_username()}" + (f": {reason}" if reason else "")
        if not rollout.snapshot and rollout.state == RolloutState.PENDING:
            rollout.snapshot, rollout.observed, rollout.expected = {}, {}, {}
        _begin_rollback(rollout, {"summary": summary, "actor": actor.get_username()}, final=RolloutState.ABORTED)
        _audit(rollout, RolloutAuditAction.ROLLOUT_ABORTED, actor=actor, after={"reason": summary})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_promote_now(*, actor: AbstractBaseUser, rollout: Rollout) -> Rollout:
    """Skips the remaining steps: the last phase (100 %, approved contents) runs next."""
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.RUNNING, RolloutState.PAUSED,
                                               RolloutState.WAITING_GATE}, "promote")
        if not rollout.phases:
            raise RolloutError("the rollout has not taken its snapshot yet", extra={"state": rollout.state})
        last = len(rollout.phases) - 1
        _event(rollout, RolloutEventKind.GATE, f"promoted to 100 % by {actor.get_username()}",
               step_key=f"gate:{last}")
        rollout.step_index, rollout.step_stage, rollout.state = last, "apply", RolloutState.RUNNING
        rollout.phases[last]["analyze"] = False
        rollout.next_action_at, rollout.pause_reason, rollout.resume_state = _now(), "", ""
        _save(rollout, "step_index", "step_stage", "state", "phases", "next_action_at", "pause_reason",
              "resume_state")
        _audit(rollout, RolloutAuditAction.ROLLOUT_PROMOTE_NOW, actor=actor, after={"step": last})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_confirm_gate(*, actor: AbstractBaseUser, rollout: Rollout) -> Rollout:
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.WAITING_GATE}, "confirm the gate of")
        _event(rollout, RolloutEventKind.GATE, f"gate confirmed by {actor.get_username()}",
               step_key=f"gate:{rollout.step_index}")
        rollout.state, rollout.next_action_at = RolloutState.RUNNING, _now()
        _save(rollout, "state", "next_action_at")
        _audit(rollout, RolloutAuditAction.ROLLOUT_GATE_CONFIRMED, actor=actor, after={"step": rollout.step_index})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


# --- reconciler ---------------------------------------------------------------------------------------

def rollouts_start_due(*, now: dt.datetime | None = None) -> list[int]:
    """Starts the scheduled changes whose time has come and whose window is open."""
    from policies.services.windows import window_is_open

    now = now or _now()
    started = []
    due = ChangeRequest.objects.filter(state=ChangeState.SCHEDULED, rollout__isnull=True).filter(
        scheduled_for__lte=now).select_related("environment")
    for change in due:
        if not window_is_open(environment=change.environment, at=now):
            continue
        try:
            started.append(rollout_start(change=change, now=now).pk)
        except (RolloutError, ConflictError) as exc:
            logger.info("change #%s not started: %s", change.pk, exc)
    return started


def rollouts_due(*, now: dt.datetime | None = None, limit: int = 200) -> list[int]:
    """Ids of the rollouts whose next action is due (the reconciler enqueues one advance per id)."""
    now = now or _now()
    return list(Rollout.objects.filter(state__in=RolloutState.due_states(), next_action_at__lte=now)
                .order_by("next_action_at").values_list("pk", flat=True)[:limit])


# --- drift --------------------------------------------------------------------------------------------

def drift_detect(*, environment=None) -> dict[str, int]:
    """Compares each policy Meshgate rolled out with its live object; marks and notifies drift."""
    from policies.models import Environment, Team

    counts = {"checked": 0, "drifted": 0, "new": 0, "resolved": 0, "errors": 0}
    environments = [environment] if environment is not None else list(Environment.objects.all())
    for env in environments:
        policies = Policy.objects.filter(environment=env, revisions__source=RevisionSource.ROLLOUT).distinct()
        active = set(Rollout.objects.filter(environment=env, state__in=RolloutState.active())
                     .values_list("change__items__policy_id", flat=True))
        cfg = cluster_config(env)
        for policy in policies.select_related("current_revision"):
            if policy.pk in active:
                continue
            applied = PolicyRevision.objects.filter(policy=policy, source=RevisionSource.ROLLOUT).order_by(
                "-number").first()
            try:
                live = _read(cfg, strategies.identity_of(policy.kind, policy.namespace, policy.name))
            except KubernetesError:
                counts["errors"] += 1
                continue
            counts["checked"] += 1
            live_content = normalize_object(live) if live is not None else None
            drifted = live_content is None or content_hash(live_content) != applied.content_hash
            with transaction.atomic():
                existing = PolicyDrift.objects.select_for_update().filter(policy=policy).first()
                if not drifted:
                    if existing is not None:
                        existing.delete()
                        counts["resolved"] += 1
                        audit_record(action=RolloutAuditAction.DRIFT_RESOLVED, obj=policy, environment=env.name)
                    continue
                counts["drifted"] += 1
                digest = content_hash(live_content) if live_content else "absent"
                if existing is not None and existing.notified_hash == digest:
                    continue
                PolicyDrift.objects.update_or_create(policy=policy, defaults={
                    "detected_at": _now(), "live_content": live_content,
                    "live_resource_version": _rv(live), "notified_hash": digest})
                counts["new"] += 1
                audit_record(action=RolloutAuditAction.DRIFT_DETECTED, obj=policy, environment=env.name,
                             before={"revision": applied.number, "content_hash": applied.content_hash},
                             after={"live_hash": digest, "resourceVersion": _rv(live)})
                from policies.services.notifications import notify

                teams = Team.objects.filter(namespaces__environment=env, namespaces__namespace=policy.namespace)
                notify(event=NotificationEvent.DRIFT_DETECTED,
                       subject=f"{policy} drifted from the revision Meshgate applied (#{applied.number})",
                       body="The live object differs from the last revision Meshgate applied.",
                       payload={"policy": policy.pk, "environment": env.name, "revision": applied.number},
                       teams=list(teams))
    return counts
