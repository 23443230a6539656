"""Rollout use cases: start a rollout, advance it (the engine's step), the people's controls (pause,
resume, abort, promote now, confirm a gate) and the reconciler's selection.

The step machine itself (snapshot, phases, writes and their verification, analysis, promotion,
rollback) is the engine in `policies.rollout.engine`; this module hands it its effects on the rest of
the system (`EFFECTS`: audit rows, notifications, the change's state, change windows).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.contrib.auth.models import User
from django.db import OperationalError, transaction

from policies import selectors
from policies.approval import item_is_stale
from policies.choices import (
    ChangeOutcome,
    ChangeState,
    NotificationEvent,
    Role,
    RolloutAuditAction,
    RolloutEventKind,
    RolloutState,
    RolloutStrategy,
)
from policies.exceptions import ApplicationError, ConflictError, PermissionDeniedError
from policies.models import ChangeItem, ChangeRequest, Rollout, Team
from policies.rollout import analysis as an
from policies.rollout import engine, strategies, webhooks
from policies.rollout.engine import DEFAULT_ANALYSIS, TERMINAL, AdvanceResult, OutOfBand  # noqa: F401 - public names
from policies.services.audit import audit_record
from policies.services.changes import lock_change, set_state
from policies.services.notifications import _absolute, notify
from policies.services.rollout_options import rollout_options_effective
from policies.services.windows import window_explain, window_is_open, window_status

logger = logging.getLogger(__name__)

CONTROL_ROLES = frozenset({Role.APPROVER, Role.ADMIN})


class RolloutError(ConflictError):
    code = "rollout_illegal_state"


def _owner_teams(change: ChangeRequest) -> list[Team]:
    namespaces = ChangeItem.objects.filter(change=change).values("namespace")
    return list(
        Team.objects.filter(
            namespaces__environment=change.environment_id, namespaces__namespace__in=namespaces
        ).distinct()
    )


def _notify(rollout: Rollout, event: str, subject: str, body: str, payload: dict[str, Any]) -> None:
    change = rollout.change
    notify(
        event=event,
        subject=subject,
        body=body or subject,
        url=engine.rollout_url(rollout),
        payload=payload,
        teams=_owner_teams(change),
        users=[change.author],
    )


# The event a pipeline's webhook receives when the engine ends the change in that state.
CHANGE_END_EVENTS = {
    ChangeState.COMPLETED: NotificationEvent.CHANGE_COMPLETED,
    ChangeState.ROLLED_BACK: NotificationEvent.CHANGE_ROLLED_BACK,
    ChangeState.FAILED: NotificationEvent.CHANGE_FAILED,
    ChangeState.ABORTED: NotificationEvent.CHANGE_ABORTED,
}


def _set_change_state(
    change: ChangeRequest, state: str, *, actor: User | None = None, action: str, after: dict[str, Any] | None = None
) -> ChangeRequest:
    change = lock_change(change)
    if change.state != state:
        set_state(change, state, actor=actor, action=action, after=after)
        event = CHANGE_END_EVENTS.get(ChangeState(state))
        if event is not None:
            notify(
                event=event,
                subject=f"Change #{change.pk} “{change.title}” {ChangeState(state).label.lower()} "
                f"on {change.environment.name}",
                body="",
                url=f"/changes/{change.pk}/",
                payload={
                    "change": change.pk,
                    "environment": change.environment.name,
                    "state": state,
                    "outcome": ChangeOutcome.of(state).value,
                    "title": change.title,
                    "repository": change.repository,
                    "commit_sha": change.commit_sha,
                    "pull_request": change.pull_request,
                    **(after or {}),
                },
                teams=_owner_teams(change),
                users=[change.author],
            )
    return change


EFFECTS = engine.Effects(
    audit=audit_record,
    notify=_notify,
    set_change_state=_set_change_state,
    window_status=window_status,
    absolute_url=_absolute,
)


# --- start --------------------------------------------------------------------------------------------


def rollout_start(
    *,
    change: ChangeRequest,
    actor: User | None = None,
    strategy: str | None = None,
    steps: Any = None,
    analysis: dict[str, Any] | None = None,
    gates: list[int] | None = None,
    now: dt.datetime | None = None,
) -> Rollout:
    """scheduled → rolling_out: creates the Rollout row (pending, due now). The window must be open and
    no item stale; `actor` None is the reconciler, a person must be an approver/admin of the owners.
    Options not given here come from the change's rollout plan (`ChangeRequest.rollout_options` over
    the defaults)."""
    now = now or engine.now()
    planned = rollout_options_effective(change)
    strategy = strategy or planned["strategy"]
    steps = planned["steps"] if steps is None else steps
    analysis = planned["analysis"] if analysis is None else analysis
    gates = planned["gates"] if gates is None else gates
    if actor is not None and not _may_control_change(actor, change):
        raise PermissionDeniedError("only approvers or admins of the owning team can start this rollout")
    # The same rule as review: a policy's current revision moved, or a policy this change creates
    # exists now.
    stale = [item.label for item in selectors.change_items(change=change) if item_is_stale(item)]
    if stale:
        raise RolloutError(
            f"change #{change.pk} is stale (rebase it first): {', '.join(stale)}",
            extra={"state": change.state, "stale": stale},
        )
    try:
        webhooks.parse_webhooks((analysis or {}).get("webhooks"), path="analysis.webhooks")
    except webhooks.WebhookConfigError as exc:
        raise ApplicationError(str(exc), extra={"field": exc.path}) from None
    items = engine.strategy_items(change)
    chosen = strategy or strategies.default_strategy([i.kind for i in items])
    if chosen not in RolloutStrategy.values:
        raise RolloutError(f"unknown strategy {chosen!r}", extra={"allowed": RolloutStrategy.values})
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update(of=("self",)).select_related("environment").get(pk=change.pk)
        if change.state != ChangeState.SCHEDULED:
            raise RolloutError(
                f"cannot start a rollout of a change in state {change.state}", extra={"state": change.state}
            )
        if change.scheduled_for and change.scheduled_for > now:
            raise RolloutError(
                f"change #{change.pk} is scheduled for {change.scheduled_for.isoformat()}",
                extra={"state": change.state},
            )
        if not window_is_open(environment=change.environment, at=now):
            raise RolloutError(
                f"the change window of {change.environment.name} is closed: "
                f"{window_explain(environment=change.environment, at=now)}",
                extra={"state": change.state},
            )
        rollout = Rollout.objects.create(
            change=change,
            environment=change.environment,
            strategy=chosen,
            steps=strategies.normalize_steps(steps),
            analysis={**DEFAULT_ANALYSIS, **(analysis or {}), "gates": list(gates or [])},
            state=RolloutState.PENDING,
            next_action_at=now,
            started_at=now,
        )
        _set_change_state(
            change,
            ChangeState.ROLLING_OUT,
            actor=actor,
            action=RolloutAuditAction.ROLLOUT_STARTED,
            after={"rollout": rollout.pk, "strategy": chosen},
        )
        engine.bind(rollout, EFFECTS)
        engine.record_event(
            rollout,
            RolloutEventKind.STARTED,
            f"rollout started ({chosen})",
            data={"steps": rollout.steps},
            step_key="start",
        )
        engine.notify(
            rollout,
            NotificationEvent.ROLLOUT_STARTED,
            f"Rollout of change #{change.pk} “{change.title}” started on {change.environment.name} ({chosen})",
        )
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def _enqueue(rollout_id: int, countdown: float = 0) -> None:
    from policies.jobs import rollout_advance

    try:
        rollout_advance.apply_async((rollout_id,), countdown=max(0.0, countdown))
    except Exception:  # noqa: BLE001 - the reconciler picks it up when the broker is down
        logger.warning("could not enqueue rollout %s; the reconciler will pick it up", rollout_id)


# --- advance ------------------------------------------------------------------------------------------


def rollout_advance(
    *, rollout_id: int, analyzer: an.Analyzer | None = None, now: dt.datetime | None = None
) -> AdvanceResult:
    """Executes the rollout's next due action, if it is due and no other executor holds it."""
    return engine.advance(rollout_id=rollout_id, effects=EFFECTS, analyzer=analyzer, now=now)


# --- controls (people) ----------------------------------------------------------------------------------


def user_may_control(*, user: User, rollout: Rollout) -> bool:
    """Approvers and admins of every team owning a namespace the change touches, or platform admins."""
    return _may_control_change(user, rollout.change)


def _may_control_change(user: User, change: ChangeRequest) -> bool:
    if not user.is_authenticated:
        return False
    if selectors.user_is_admin(user):
        return True
    namespaces = {i.namespace for i in engine.change_items(change)}
    return bool(namespaces) and all(
        selectors.user_role_for_namespace(user=user, environment=change.environment, namespace=ns) in CONTROL_ROLES
        for ns in namespaces
    )


def _locked_for(actor: User, rollout: Rollout, allowed: set[str], verb: str) -> Rollout:
    try:
        rollout = (
            Rollout.objects.select_for_update(nowait=True, of=("self",))
            .select_related("change", "environment")
            .get(pk=rollout.pk)
        )
    except OperationalError:
        raise RolloutError(
            f"the engine is acting on this rollout right now; {verb} it again in a moment",
            extra={"state": rollout.state},
        ) from None
    if not user_may_control(user=actor, rollout=rollout):
        raise PermissionDeniedError(f"only approvers or admins of the owning team can {verb} this rollout")
    if engine.lease_held(rollout):
        raise RolloutError(
            f"the engine is acting on this rollout right now; {verb} it again in a moment",
            extra={"state": rollout.state},
        )
    if rollout.state not in allowed:
        raise RolloutError(
            f"cannot {verb} a rollout that is {rollout.state}",
            extra={"state": rollout.state, "allowed_states": sorted(allowed)},
        )
    return engine.bind(rollout, EFFECTS)


def rollout_pause(*, actor: User, rollout: Rollout, reason: str = "") -> Rollout:
    with transaction.atomic():
        rollout = _locked_for(
            actor, rollout, {RolloutState.PENDING, RolloutState.RUNNING, RolloutState.WAITING_GATE}, "pause"
        )
        engine.pause(
            rollout, reason=f"paused by {actor.get_username()}" + (f": {reason}" if reason else ""), actor=actor
        )
    return rollout


def rollout_resume(*, actor: User, rollout: Rollout) -> Rollout:
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.PAUSED}, "resume")
        rollout.state = rollout.resume_state or RolloutState.RUNNING
        if rollout.state == RolloutState.WAITING_GATE:
            rollout.next_action_at = None
        else:
            rollout.next_action_at = engine.now()
        rollout.pause_reason, rollout.resume_state, rollout.attempts = "", "", 0
        # A person looked: the analysis' no-data / inconclusive streaks start again.
        state = {
            **(rollout.analysis.get("state") or {}),
            "no_data_in_row": 0,
            "inconclusive_in_row": 0,
            "webhook_failures": {},
        }
        rollout.analysis = {**rollout.analysis, "state": state}
        engine.save_fields(rollout, "state", "next_action_at", "pause_reason", "resume_state", "attempts", "analysis")
        engine.record_event(rollout, RolloutEventKind.RESUMED, f"resumed by {actor.get_username()}")
        engine.audit(rollout, RolloutAuditAction.ROLLOUT_RESUMED, actor=actor, after={"state": rollout.state})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_continue_on_live(*, actor: User, rollout: Rollout) -> Rollout:
    """A rollout paused by another writer's edit goes on from the edited live object: its edits are
    carried into the remaining phases, the promotion's verification and the rollback's target. Refused
    (409) when the edit touches fields the approved change sets (the approvals do not cover the
    result: abort, or make a new change)."""
    if not user_may_control(user=actor, rollout=rollout):
        raise PermissionDeniedError("only approvers or admins of the owning team can continue this rollout")
    out_of_band = (rollout.analysis or {}).get("out_of_band") or {}
    identity = out_of_band.get("identity")
    if rollout.state != RolloutState.PAUSED or not identity:
        raise RolloutError(
            "only a rollout paused by another writer's edit can continue on the live object",
            extra={"state": rollout.state},
        )
    live = engine.read_live(rollout, identity)  # the cluster read happens before any lock is taken
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.PAUSED}, "continue")
        if ((rollout.analysis or {}).get("out_of_band") or {}).get("identity") != identity:
            raise RolloutError("the rollout changed meanwhile; look again", extra={"state": rollout.state})
        clashes = engine.continue_on_live(rollout, {identity: live})
        if clashes:
            raise RolloutError(
                "cannot continue on the live object: the other writer's edit touches what the "
                f"approved change sets ({'; '.join(clashes)}); abort, or make a new change",
                extra={"state": rollout.state, "clashes": clashes},
            )
        edits = rollout.analysis["adopted"][identity]
        rollout.analysis = {k: v for k, v in rollout.analysis.items() if k != "out_of_band"}
        rollout.state = rollout.resume_state or RolloutState.RUNNING
        rollout.next_action_at = None if rollout.state == RolloutState.WAITING_GATE else engine.now()
        rollout.pause_reason, rollout.resume_state, rollout.attempts = "", "", 0
        engine.save_fields(
            rollout,
            "state",
            "next_action_at",
            "pause_reason",
            "resume_state",
            "attempts",
            "analysis",
            "phases",
            "observed",
            "expected",
            "others",
        )
        paths = [".".join(map(str, engine.json_loads(p))) for p in edits]
        engine.record_event(
            rollout,
            RolloutEventKind.RESUMED,
            f"continued by {actor.get_username()} on the live {identity} as "
            f"{', '.join(out_of_band.get('managers') or ['another writer'])} left it; carried into "
            f"the remaining steps: {', '.join(paths) or 'no field'}",
            data={"identity": identity, "edits": edits, "resourceVersion": engine.rv_of(live)},
        )
        engine.audit(
            rollout,
            RolloutAuditAction.ROLLOUT_RESUMED,
            actor=actor,
            after={"state": rollout.state, "continued_on_live": identity, "edits": paths},
        )
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_abort(*, actor: User, rollout: Rollout, reason: str = "") -> Rollout:
    """A person stops the rollout: the snapshot is restored, the change ends `aborted`."""
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, set(RolloutState.active()) - {RolloutState.ROLLING_BACK}, "abort")
        summary = f"aborted by {actor.get_username()}" + (f": {reason}" if reason else "")
        if not rollout.snapshot and rollout.state == RolloutState.PENDING:
            rollout.snapshot, rollout.observed, rollout.expected = {}, {}, {}
        engine.begin_rollback(rollout, {"summary": summary, "actor": actor.get_username()}, final=RolloutState.ABORTED)
        engine.audit(rollout, RolloutAuditAction.ROLLOUT_ABORTED, actor=actor, after={"reason": summary})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_promote_now(*, actor: User, rollout: Rollout) -> Rollout:
    """Skips the remaining steps: the last phase (100 %, approved contents) runs next."""
    with transaction.atomic():
        rollout = _locked_for(
            actor, rollout, {RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.WAITING_GATE}, "promote"
        )
        if not rollout.phases:
            raise RolloutError("the rollout has not taken its snapshot yet", extra={"state": rollout.state})
        last = len(rollout.phases) - 1
        engine.record_event(
            rollout, RolloutEventKind.GATE, f"promoted to 100 % by {actor.get_username()}", step_key=f"gate:{last}"
        )
        rollout.step_index, rollout.step_stage, rollout.state = last, "apply", RolloutState.RUNNING
        rollout.phases[last]["analyze"] = False
        rollout.next_action_at, rollout.pause_reason, rollout.resume_state = engine.now(), "", ""
        engine.save_fields(
            rollout, "step_index", "step_stage", "state", "phases", "next_action_at", "pause_reason", "resume_state"
        )
        engine.audit(rollout, RolloutAuditAction.ROLLOUT_PROMOTE_NOW, actor=actor, after={"step": last})
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


def rollout_confirm_gate(*, actor: User, rollout: Rollout) -> Rollout:
    with transaction.atomic():
        rollout = _locked_for(actor, rollout, {RolloutState.WAITING_GATE}, "confirm the gate of")
        engine.record_event(
            rollout,
            RolloutEventKind.GATE,
            f"gate confirmed by {actor.get_username()}",
            step_key=f"gate:{rollout.step_index}",
        )
        rollout.state, rollout.next_action_at = RolloutState.RUNNING, engine.now()
        engine.save_fields(rollout, "state", "next_action_at")
        engine.audit(
            rollout, RolloutAuditAction.ROLLOUT_GATE_CONFIRMED, actor=actor, after={"step": rollout.step_index}
        )
        transaction.on_commit(lambda: _enqueue(rollout.pk))
    return rollout


# --- reconciler ---------------------------------------------------------------------------------------


def rollouts_start_due(*, now: dt.datetime | None = None) -> list[int]:
    """Starts the scheduled changes whose time has come and whose window is open."""
    now = now or engine.now()
    started = []
    due = (
        ChangeRequest.objects.filter(state=ChangeState.SCHEDULED, rollout__isnull=True)
        .filter(scheduled_for__lte=now)
        .select_related("environment")
    )
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
    now = now or engine.now()
    return list(
        Rollout.objects.filter(state__in=RolloutState.due_states(), next_action_at__lte=now)
        .order_by("next_action_at")
        .values_list("pk", flat=True)[:limit]
    )
