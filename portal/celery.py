"""The Celery application shared by the web process, the worker and beat."""
import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.local")

app = Celery("meshgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _announce_ready(**_) -> None:
    """Lets the run script and the tests wait for a worker that is really consuming."""
    ready_file = os.environ.get("MESHGATE_WORKER_READY_FILE")
    if ready_file:
        with open(ready_file, "w") as fh:
            fh.write(str(os.getpid()))
