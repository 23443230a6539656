"""A real Celery worker process executes the import task, over the configured broker."""

import time

import pytest

from policies.models import Policy
from policies.tasks import import_environment
from portal.models import TaskStat
from tests.factories import EnvironmentFactory


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the worker")
        time.sleep(0.25)


@pytest.mark.worker
def test_the_worker_imports_an_environment(celery_worker_process, meshsim, client):
    env = EnvironmentFactory(name="staging", api_url=meshsim.url)
    import_environment.delay(env.pk)

    _wait(lambda: TaskStat.objects.filter(task="policies.tasks.import_environment", outcome="success").exists())
    assert Policy.objects.filter(environment=env, namespace="bookinfo", name="reviews").exists()
    env.refresh_from_db()
    assert env.last_import_at is not None

    metrics = client.get("/metrics").content.decode()
    assert 'meshgate_celery_tasks_total{outcome="success",task="policies.tasks.import_environment"} 1.0' in metrics
