"""The background jobs, by name: how services (and the few views that start one) enqueue Celery work.

Services never import `policies.tasks` (the tasks import services): they send a job by its task
name, after the current transaction commits, so a worker never reads rows that are not there yet
and a rolled-back change sends nothing:

    jobs.compute_plan.on_commit(change.pk)
    jobs.rollout_advance.apply_async((rollout.pk,), countdown=5)   # now, e.g. from an on_commit

Every message goes through `send`, the one place tests replace to see what would be sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.db import transaction


def send(name: str, args: Sequence[Any], countdown: float | None = None) -> None:
    """Publishes one task message by its registered name (the worker imports `policies.tasks`)."""
    current_app.send_task(name, args=tuple(args), countdown=countdown)


@dataclass(frozen=True)
class Job:
    """A task known by its name; the Celery-like `delay` / `apply_async` send it now."""

    name: str

    def apply_async(self, args: Sequence[Any] = (), countdown: float | None = None) -> None:
        send(self.name, args, countdown=countdown)

    def delay(self, *args: Any) -> None:
        send(self.name, args)

    def on_commit(self, *args: Any, countdown: float | None = None) -> None:
        """Sends once the current transaction commits (at once outside one). `robust`: a broker outage
        is logged and does not fail the request that already committed; the periodic rescues
        (reconcile_rollouts, for rollouts and plans; retry_due_notifications; seal_audit_log) pick the work up."""
        transaction.on_commit(lambda: send(self.name, args, countdown=countdown), robust=True)


import_environment = Job("policies.tasks.import_environment")  # (environment_id, actor_id | None)
probe_clusters = Job("policies.tasks.probe_clusters")  # ()
deliver_notification = Job("policies.tasks.deliver_notification")  # (delivery_id,)
retry_due_notifications = Job("policies.tasks.retry_due_notifications")  # ()
compute_plan = Job("policies.tasks.compute_plan")  # (change_id,)
rollout_advance = Job("policies.tasks.rollout_advance")  # (rollout_id,)
reconcile_rollouts = Job("policies.tasks.reconcile_rollouts")  # ()
detect_drift = Job("policies.tasks.detect_drift")  # ()
seal_audit_log = Job("policies.tasks.seal_audit_log")  # ()
