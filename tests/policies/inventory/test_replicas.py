"""Meshgate on N replicas, as production runs it: two web processes (gunicorn through docker/start-web),
two Celery workers (docker/start-worker: one for plans and imports, one for rollout steps), one
inventory watcher (manage.py watch_inventory) and meshsim over HTTP, all on the one database and broker.

A change validated through one web process, planned by one worker and rolled out by the other reads the
same live inventory: a Service the cluster gained after the first list is known to all of them while the
cluster refuses to list it, and the plan reads the live objects from the inventory while the cluster
refuses to serve them. Once the watcher is killed and the inventory has aged past its bound, validation
through either web process still works: it lists the cluster itself and says so (MG0399)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.utils import timezone
from kubernetes import client

from integrations import kubernetes as kube
from integrations.kubernetes.watch import WATCHED_KINDS
from policies.choices import ChangeState, PlanLiveState, PlanStatus, RolloutState
from policies.cluster import cluster_config
from policies.models import ChangeRequest, InventoryObject, InventoryWatermark, Plan, Rollout
from policies.normalize import normalize_object
from policies.services.imports import environment_import
from policies.tasks import reconcile_rollouts
from portal.choices import TokenScope
from tests.api_testing import token_for
from tests.fixtures.meshsim import kube_api_client
from tests.fixtures.worker import _database_url, _purge_queue, start_worker_process, stop_process

pytestmark = pytest.mark.worker

REPO = Path(__file__).resolve().parents[3]
TIMEOUT = 90.0
START_SECONDS = 180.0
BEAT = 2.0
ENDED = {ChangeState.COMPLETED, ChangeState.ROLLED_BACK, ChangeState.FAILED, ChangeState.ABORTED}

ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-inventoried, namespace: bookinfo}
spec:
  hosts: [inventoried]
  http:
  - route:
    - destination: {host: inventoried, port: {number: 9080}}
"""
# The cluster answers 500 to these while the inventory is what is read.
NO_SERVICE_LIST = {"match": {"verb": "list", "resource": "services"}, "status": 500}
NO_VIRTUAL_SERVICE_READS = [
    {"match": {"verb": verb, "resource": "virtualservices"}, "status": 500} for verb in ("get", "list")
]


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT, beat: bool = False) -> Any:
    """Polls until `predicate()` is true (playing celery beat every BEAT s when `beat`)."""
    deadline = time.monotonic() + timeout
    next_beat = 0.0
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout}s: {what}"
        if beat and time.monotonic() >= next_beat:
            reconcile_rollouts.delay()
            next_beat = time.monotonic() + BEAT
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "DATABASE_URL": _database_url(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


class Web:
    """One web process (docker/start-web: gunicorn) on a free port, with a token's requests."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = tmp_path / f"{name}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(REPO / "docker" / "start-web")],
                cwd=REPO,
                env=_process_env(MESHGATE_BIND=self.url.removeprefix("http://"), WEB_CONCURRENCY="1"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()[-3000:]}"
        try:
            return requests.get(f"{self.url}/healthz", timeout=10).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still starting
            return False

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        response = requests.request(
            method, f"{self.url}/api/v1/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs
        )
        assert response.status_code < 300, f"{self.name} {method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else {}

    def validate(self, token: str) -> set[str]:
        report = self.call("POST", "validate", token, json={"environment": "staging", "text": ROUTE})
        return {finding["code"] for finding in report["findings"]}


@pytest.fixture
def replicas(transactional_db, org, meshsim, tmp_path) -> Iterator[Any]:
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    environment_import(environment=org.env)
    _purge_queue()
    started: list[subprocess.Popen[bytes]] = []

    class Replicas:
        pass

    r = Replicas()
    r.org, r.meshsim = org, meshsim
    r.log = lambda name: (tmp_path / f"{name}.log").read_text(errors="replace")
    try:
        with (tmp_path / "watcher.log").open("w") as log:
            r.watcher = subprocess.Popen(
                [str(REPO / "docker" / "start-inventory")],
                cwd=REPO,
                env=_process_env(MESHGATE_INVENTORY_ARGS="--rescan-seconds 1", MESHGATE_INVENTORY_WATCH_SECONDS="2"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(r.watcher)
        # The workers first: seven processes booting Django at once on two shared cores take a while.
        analyzer = {"MESHGATE_ROLLOUT_ANALYZER": "tests.policies.rollouts.stubs.env_scripted"}
        r.planner = start_worker_process(
            tmp_path, "worker-plans", timeout=START_SECONDS, MESHGATE_WORKER_QUEUES="default", **analyzer
        )
        started.append(r.planner)
        r.roller = start_worker_process(
            tmp_path, "worker-rollouts", timeout=START_SECONDS, MESHGATE_WORKER_QUEUES="rollouts", **analyzer
        )
        started.append(r.roller)
        r.webs = [Web(tmp_path, "web-a"), Web(tmp_path, "web-b")]
        started += [web.proc for web in r.webs]
        for web in r.webs:
            wait_until(web.ready, f"{web.name} answers /healthz", timeout=START_SECONDS)
        r.author = token_for(org.author, [TokenScope.WRITE])
        r.approver = token_for(org.approver, [TokenScope.WRITE])
        yield r
    finally:
        for proc in started:
            stop_process(proc)
        meshsim.admin("DELETE", "faults")


def test_web_and_worker_replicas_share_the_inventory_and_survive_the_watcher(replicas):
    r = replicas
    env = r.org.env
    web_a, web_b = r.webs
    wait_until(
        lambda: InventoryWatermark.objects.filter(environment=env).count() == len(WATCHED_KINDS),
        "the watcher listed every kind",
    )
    with kube_api_client(r.meshsim.url) as api:  # the cluster gains a Service after the first list
        client.CoreV1Api(api).create_namespaced_service(
            "bookinfo",
            {"metadata": {"name": "inventoried"}, "spec": {"selector": {"app": "ratings"}, "ports": [{"port": 9080}]}},
        )
    wait_until(
        lambda: InventoryObject.objects.filter(environment=env, kind="Service", name="inventoried").exists(),
        "the new Service arrives by the watch",
    )

    # Services can no longer be listed: both web processes still resolve the host, from the inventory.
    r.meshsim.admin("POST", "faults", json=NO_SERVICE_LIST).raise_for_status()
    for web in (web_a, web_b):
        found = web.validate(r.author)
        assert not found & {"MG0300", "MG0301", "MG0399"}, (web.name, found)

    # The change is created and submitted through web A; the plans worker reads the live objects from
    # the inventory (the cluster refuses to serve VirtualServices meanwhile).
    for fault in NO_VIRTUAL_SERVICE_READS:
        r.meshsim.admin("POST", "faults", json=fault).raise_for_status()
    change_id = web_a.call(
        "POST", "changes/", r.author, json={"environment": "staging", "title": "route to inventoried", "text": ROUTE}
    )["id"]
    web_a.call(
        "POST",
        f"changes/{change_id}/rollout-options/",
        r.author,
        json={"strategy": "direct", "analysis": {"interval_seconds": 5}},
    )
    web_a.call("POST", f"changes/{change_id}/submit/", r.author)
    plan = wait_until(lambda: Plan.objects.filter(change_id=change_id).first(), "the plans worker stores a plan")
    assert plan.status == PlanStatus.OK, plan.error
    (plan_item,) = plan.items.all()
    assert plan_item.live_state == PlanLiveState.ABSENT
    assert not {f["code"] for f in plan_item.findings} & {"MG0399", "MG0300"}, plan_item.findings

    # Approved and scheduled through web B; the rollouts worker rolls it out.
    r.meshsim.admin("DELETE", "faults").raise_for_status()
    web_b.call("POST", f"changes/{change_id}/approve/", r.approver, json={"body": "the host is known"})
    web_b.call("POST", f"changes/{change_id}/schedule/", r.approver)
    wait_until(
        lambda: ChangeRequest.objects.get(pk=change_id).state in ENDED,
        "the rollout ends",
        beat=True,
    )
    rollout = Rollout.objects.get(change_id=change_id)
    assert rollout.state == RolloutState.COMPLETED, rollout.error or rollout.pause_reason or rollout.rollback_reason
    live = kube.get_object(cluster_config(env), "VirtualService", "bookinfo", "to-inventoried")
    assert normalize_object(live)["spec"]["hosts"] == ["inventoried"]
    # each worker ran its own kind of task
    assert "Task policies.tasks.rollout_advance[" in r.log("worker-rollouts")
    assert "Task policies.tasks.compute_plan[" not in r.log("worker-rollouts")
    assert "Task policies.tasks.compute_plan[" in r.log("worker-plans")
    assert "Task policies.tasks.rollout_advance[" not in r.log("worker-plans")
    wait_until(
        lambda: InventoryObject.objects.filter(environment=env, kind="VirtualService", name="to-inventoried").exists(),
        "the rolled-out object arrives in the inventory by the watch",
    )

    # The watcher is killed. Once its last confirmation is older than the bound (the rows are aged here
    # rather than waited for), both web processes list the cluster themselves and say so.
    r.watcher.send_signal(signal.SIGKILL)
    r.watcher.wait(10)
    aged = timezone.now() - dt.timedelta(seconds=settings.MESHGATE_INVENTORY_MAX_AGE_SECONDS + 5)
    InventoryWatermark.objects.filter(environment=env).update(synced_at=aged)
    for web in (web_a, web_b):
        found = web.validate(r.author)
        assert "MG0399" in found, (web.name, found)
        assert not found & {"MG0300", "MG0301"}, (web.name, found)
    notice = requests.post(
        f"{web_a.url}/api/v1/validate",
        headers={"Authorization": f"Bearer {r.author}"},
        json={"environment": "staging", "text": ROUTE},
        timeout=60,
    ).json()["findings"]
    message = next(f["message"] for f in notice if f["code"] == "MG0399")
    assert "inventory stale since" in message
