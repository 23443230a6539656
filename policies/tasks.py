"""Celery tasks: thin wrappers that take ids and call one service."""

import datetime as dt
import logging
import time

from celery import Task, shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from policies import jobs
from policies.exceptions import ClusterError
from policies.models import ChangeRequest, Environment
from policies.services.clusters import environment_probe
from policies.services.drift import drift_detect
from policies.services.imports import environment_import
from policies.services.notifications import notification_deliver, notifications_due
from policies.services.plans import plan_compute, plans_rescue
from policies.services.rollouts import rollout_advance as advance
from policies.services.rollouts import rollouts_due, rollouts_start_due

logger = logging.getLogger(__name__)


@shared_task(bind=True, autoretry_for=(), max_retries=3)
def import_environment(self: Task, environment_id: int, actor_id: int | None = None) -> dict:
    environment = Environment.objects.get(pk=environment_id)
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        result = environment_import(environment=environment, actor=actor)
    except ClusterError as exc:
        logger.warning("import of %s failed, retrying: %s", environment.name, exc.message)
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1))
    logger.info("imported %s: %s", environment.name, result)
    return {"new_revisions": result.new_revisions, "unchanged": result.unchanged, "gone": result.gone}


@shared_task
def probe_clusters() -> dict:
    return {env.name: environment_probe(environment=env) for env in Environment.objects.all()}


@shared_task(bind=True, max_retries=None)
def deliver_notification(self: Task, delivery_id: int) -> str:
    """One attempt at one notification delivery; the row decides whether another follows (with
    exponential backoff) and when the delivery is given up."""
    outcome = notification_deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return str(outcome.status)


@shared_task
def retry_due_notifications() -> int:
    """Periodic: re-enqueues deliveries whose next attempt is overdue (a lost or killed task)."""
    due = notifications_due()
    for delivery_id in due:
        jobs.deliver_notification.delay(delivery_id)
    return len(due)


@shared_task(bind=True, max_retries=3)
def compute_plan(self: Task, change_id: int) -> dict:
    """The plan of a change: live objects, diffs and server dry-run, stored as a Plan row."""
    change = ChangeRequest.objects.filter(pk=change_id).first()
    if change is None:
        return {"change": change_id, "status": "missing"}
    plan = plan_compute(change=change)
    logger.info("plan of change #%s: %s in %s ms", change_id, plan.status, plan.duration_ms)
    return {"change": change_id, "plan": plan.pk, "status": plan.status}


# --- rollouts -------------------------------------------------------------------------------------

# One task runs a rollout's actions back to back while the next one is due at once (prepare → first
# apply, an analysis that advances → the next apply): no broker round trip between them. It yields
# after ROLLOUT_BURST_ACTIONS so one rollout cannot hold a worker process.
ROLLOUT_BURST_ACTIONS = 8
ROLLOUT_BURST_SECONDS = 20.0
ROLLOUT_IMMEDIATE_SECONDS = 0.05
# The chain of one rollout follows its own next action (a task with a countdown) when it is this
# close; later actions, lost tasks and killed workers are the reconciler's.
ROLLOUT_FOLLOW_SECONDS = 900.0


@shared_task(acks_late=True)
def rollout_advance(rollout_id: int) -> dict:
    """Executes the rollout's due actions (a no-op when none is due or another worker holds it)."""
    started = time.monotonic()
    result = advance(rollout_id=rollout_id)
    actions = int(result.acted)
    while (
        result.acted
        and result.next_in is not None
        and result.next_in <= ROLLOUT_IMMEDIATE_SECONDS
        and actions < ROLLOUT_BURST_ACTIONS
        and time.monotonic() - started < ROLLOUT_BURST_SECONDS
    ):
        result = advance(rollout_id=rollout_id)
        actions += int(result.acted)
    if result.next_in is not None and result.next_in <= ROLLOUT_FOLLOW_SECONDS and (result.acted or actions):
        rollout_advance.apply_async((rollout_id,), countdown=result.next_in)
    return {"rollout": rollout_id, "actions": actions, "state": result.state}


@shared_task
def reconcile_rollouts() -> dict:
    """Periodic: starts due scheduled changes and enqueues an advance for every rollout whose next action
    is overdue by more than `MESHGATE_ROLLOUT_RESCUE_SECONDS` (its own chain of tasks was lost: a
    killed worker, a broker outage). Rollouts due just now are left to their chains, so a busy worker
    is not handed duplicates. It also sends again the plans asked for longer than
    `MESHGATE_PLAN_RESCUE_SECONDS` ago and never stored (`plans_rescue`)."""

    started = rollouts_start_due()
    grace = dt.timedelta(seconds=settings.MESHGATE_ROLLOUT_RESCUE_SECONDS)
    due = rollouts_due(now=timezone.now() - grace)
    for rollout_id in due:
        rollout_advance.delay(rollout_id)
    plans = plans_rescue()
    return {"started": len(started), "due": len(due), "plans": len(plans)}


@shared_task
def detect_drift() -> dict:
    """Periodic: marks the policies whose live object differs from the revision Meshgate applied."""
    return drift_detect()


@shared_task
def seal_audit_log() -> int:
    """Periodic: seals committed audit rows whose commit hook did not run (a killed process)."""
    from policies.services.audit import audit_seal

    return audit_seal()
