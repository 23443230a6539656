"""The live inventory end to end: `manage.py watch_inventory` (a real process) against meshsim over
HTTP, the rows it keeps in the test database, and validation reading them (and listing the cluster
directly, with a notice, once the watcher is gone)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from integrations import kubernetes as kube
from integrations.kubernetes.watch import WATCHED_KINDS
from policies import inventory
from policies.models import InventoryObject, InventoryWatermark
from policies.validation import validate_text
from policies.validation.context import LIVE_KINDS
from policies.validation.context import _workload as workload_of
from tests.factories import EnvironmentFactory
from tests.fixtures.meshsim import kube_api_client
from tests.fixtures.worker import _database_url

REPO = Path(__file__).resolve().parents[3]

ROUTE_TO_INVENTORIED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-inventoried, namespace: bookinfo}
spec:
  hosts: [inventoried]
  http:
  - route:
    - destination: {host: inventoried, port: {number: 9080}}
"""


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {timeout}s: {what}"
        time.sleep(0.1)


@pytest.fixture
def staging(transactional_db, meshsim):
    return EnvironmentFactory(name="staging", api_url=meshsim.url)


@pytest.fixture
def watcher(staging, tmp_path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "watcher.log").open("w")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "DATABASE_URL": _database_url(),
        "MESHGATE_INVENTORY_WATCH_SECONDS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "watch_inventory", "--rescan-seconds", "1"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)  # a deadline: the watcher stops its informers first, slowly on a busy machine
    log.close()


def test_the_watcher_keeps_the_inventory_and_validation_reads_it(staging, watcher, meshsim, settings):
    wait_until(
        lambda: InventoryWatermark.objects.filter(environment=staging).count() == len(WATCHED_KINDS),
        "a watermark for every kind",
    )
    cfg = kube.ClusterConfig(api_url=meshsim.url, timeout_seconds=5)
    live_pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in kube.list_pods(cfg)}
    stored = set(InventoryObject.objects.filter(environment=staging, kind="Pod").values_list("namespace", "name"))
    assert stored == live_pods

    with kube_api_client(meshsim.url) as api:
        client.CoreV1Api(api).create_namespaced_service(
            "bookinfo",
            {
                "metadata": {"name": "inventoried"},
                "spec": {"selector": {"app": "inventoried"}, "ports": [{"port": 9080}]},
            },
        )
    wait_until(
        lambda: InventoryObject.objects.filter(environment=staging, kind="Service", name="inventoried").exists(),
        "the new Service arrives by the watch",
    )

    # Listing Services now fails: a validation that still knows the new one read the inventory.
    meshsim.admin("POST", "faults", json={"match": {"method": "GET", "path_regex": "^/api/v1/services"}, "status": 500})
    report = validate_text(environment=staging, text=ROUTE_TO_INVENTORIED)
    found = {f.code for f in report.findings}
    assert not found & {"MG0301", "MG0303", "MG0300", "MG0399"}, report.findings

    # The watcher stops: past the bound, validation lists the cluster itself and says so.
    watcher.terminate()
    watcher.wait(60)
    meshsim.admin("DELETE", "faults")
    settings.MESHGATE_INVENTORY_MAX_AGE_SECONDS = 0.5
    wait_until(lambda: not inventory.freshness(staging, LIVE_KINDS).fresh, "the inventory past its bound")
    report = validate_text(environment=staging, text=ROUTE_TO_INVENTORIED)
    notice = [f for f in report.findings if f.code == "MG0399"]
    assert len(notice) == 1 and "cluster state read directly: inventory stale since" in notice[0].message
    assert not {f.code for f in report.findings} & {"MG0301", "MG0300"}, "the direct list found the Service"


def test_a_deleted_object_leaves_the_inventory_and_a_reset_cluster_is_listed_again(staging, watcher, meshsim):
    wait_until(
        lambda: InventoryWatermark.objects.filter(environment=staging).count() == len(WATCHED_KINDS),
        "a watermark for every kind",
    )
    cfg = kube.ClusterConfig(api_url=meshsim.url, timeout_seconds=5)
    rows = InventoryObject.objects.filter(environment=staging, kind="VirtualService")
    seeded = set(rows.values_list("namespace", "name"))
    assert seeded == {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in kube.list_objects(cfg, "VirtualService")
    }
    namespace, name = sorted(seeded)[0]
    kube.delete_object(cfg, "VirtualService", namespace, name)
    wait_until(lambda: not rows.filter(namespace=namespace, name=name).exists(), "the deletion arrives")
    listed_at = InventoryWatermark.objects.get(environment=staging, kind="VirtualService").listed_at
    meshsim.reset()  # the object is back; the watch history is gone (410): the watcher lists again
    wait_until(lambda: rows.filter(namespace=namespace, name=name).exists(), "the re-list brings it back")
    assert InventoryWatermark.objects.get(environment=staging, kind="VirtualService").listed_at > listed_at
    content = rows.get(namespace=namespace, name=name).content
    assert content["spec"] and content["metadata"]["managedFields"], "plans read who owns which field"
    # Pods are kept trimmed, yet the checks see each workload as a direct list shows it (its sidecar,
    # injection annotations and Node).
    stored_pods = {
        (row.namespace, row.name): row.content
        for row in InventoryObject.objects.filter(environment=staging, kind="Pod")
    }
    live_pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in kube.list_pods(cfg)}
    assert stored_pods.keys() == live_pods.keys()
    assert any(workload_of(p).has_proxy for p in live_pods.values())
    for key, live_pod in live_pods.items():
        assert workload_of(stored_pods[key]) == workload_of(live_pod), key
        assert "status" not in stored_pods[key] and "volumes" not in stored_pods[key]["spec"]
