"""The Celery application shared by the web process, the worker and beat."""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.local")

app = Celery("meshgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


ROLLOUT_TASKS = frozenset({"policies.tasks.rollout_advance", "policies.tasks.reconcile_rollouts"})
NOTIFICATION_TASKS = frozenset({"policies.tasks.deliver_notification", "policies.tasks.retry_due_notifications"})


def queue_names(default: str) -> dict[str, str]:
    """The three queues, named after the default queue (so the tests' queues stay apart)."""
    return {"default": default, "rollouts": f"{default}.rollouts", "notifications": f"{default}.notifications"}


def route_task(
    name: str, args: object, kwargs: object, options: object, task: object = None, **extra: object
) -> dict[str, str]:
    """`task_routes`: rollout steps and deliveries on queues of their own, the rest on the default."""
    queues = queue_names(app.conf.task_default_queue)
    if name in ROLLOUT_TASKS:
        return {"queue": queues["rollouts"]}
    if name in NOTIFICATION_TASKS:
        return {"queue": queues["notifications"]}
    return {"queue": queues["default"]}


@app.on_after_configure.connect
def _create_filesystem_broker_folders(sender: Celery, **_: Any) -> None:
    """The embedded broker keeps messages in folders; every process that sends or consumes makes sure
    they exist, so the first message never fails on a fresh checkout."""
    options = sender.conf.broker_transport_options or {}
    if options.get("data_folder_in"):
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if options.get(key):
                os.makedirs(options[key], exist_ok=True)


@worker_ready.connect
def _announce_ready(**_: Any) -> None:
    """Lets the run script and the tests wait for a worker that is really consuming."""
    ready_file = os.environ.get("MESHGATE_WORKER_READY_FILE")
    if ready_file:
        with open(ready_file, "w") as fh:
            fh.write(str(os.getpid()))


@worker_init.connect
def _warm_imports(**_: Any) -> None:
    """The statistical judge's libraries take a second to import; a worker loads them at start-up
    (before forking its pool) rather than inside the first rollout step that analyses."""
    import scipy.stats  # noqa: F401
