"""The Celery application shared by the web process, the worker and beat."""
import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.local")

app = Celery("meshgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
