"""Celery tasks: thin wrappers that take ids and call one service."""
import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(bind=True, autoretry_for=(), max_retries=3)
def import_environment(self, environment_id: int, actor_id: int | None = None) -> dict:
    from django.contrib.auth import get_user_model

    from policies.exceptions import ClusterError
    from policies.models import Environment
    from policies.services.imports import environment_import

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
    from policies.models import Environment
    from policies.services.clusters import environment_probe

    return {env.name: environment_probe(environment=env) for env in Environment.objects.all()}


@shared_task(bind=True, max_retries=None)
def deliver_notification(self, delivery_id: int) -> str:
    """One attempt at one notification delivery; the row decides whether another follows (with
    exponential backoff) and when the delivery is given up."""
    from policies.services.notifications import notification_deliver

    outcome = notification_deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return str(outcome.status)


@shared_task
def retry_due_notifications() -> int:
    """Periodic: re-enqueues deliveries whose next attempt is overdue (a lost or killed task)."""
    from policies.services.notifications import notifications_due

    due = notifications_due()
    for delivery_id in due:
        deliver_notification.delay(delivery_id)
    return len(due)


@shared_task(bind=True, max_retries=3)
def compute_plan(self, change_id: int) -> dict:
    """The plan of a change: live objects, diffs and server dry-run, stored as a Plan row."""
    from policies.models import ChangeRequest
    from policies.services.plans import plan_compute

    change = ChangeRequest.objects.filter(pk=change_id).first()
    if change is None:
        return {"change": change_id, "status": "missing"}
    plan = plan_compute(change=change)
    logger.info("plan of change #%s: %s in %s ms", change_id, plan.status, plan.duration_ms)
    return {"change": change_id, "plan": plan.pk, "status": plan.status}
