"""Counts Celery task outcomes in the database so the portal's /metrics can report them."""

import logging
from typing import Any

from celery import Task
from celery.signals import task_failure, task_retry, task_success
from django.db import transaction
from django.db.models import F

from portal.models import TaskStat

logger = logging.getLogger(__name__)


def _count(task_name: str, outcome: str) -> None:
    try:
        with transaction.atomic():
            stat, _ = TaskStat.objects.get_or_create(task=task_name, outcome=outcome)
            TaskStat.objects.filter(pk=stat.pk).update(count=F("count") + 1)
    except Exception:  # a metrics counter must never fail a task
        logger.exception("could not count outcome %s of %s", outcome, task_name)


@task_success.connect
def _on_success(sender: Task | None = None, **_: Any) -> None:
    assert sender is not None
    _count(sender.name, "success")


@task_failure.connect
def _on_failure(sender: Task | None = None, **_: Any) -> None:
    assert sender is not None
    _count(sender.name, "failure")


@task_retry.connect
def _on_retry(sender: Task | None = None, **_: Any) -> None:
    assert sender is not None
    _count(sender.name, "retry")
