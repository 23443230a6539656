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
