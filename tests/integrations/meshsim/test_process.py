"""The meshsim process: CLI, seeds, persistence, isolation, auth, faults, CRD location."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from integrations.meshsim import crds
from tests.fixtures.meshsim import (
    PROD_SEED,
    STAGING_SEED,
    MeshsimProcess,
    kube_api_client,
    start_meshsim,
)

from .conftest import NETWORKING, SECURITY, status_body

REVIEWS = (NETWORKING, "v1", "bookinfo", "virtualservices", "reviews")


def _weights(custom: client.CustomObjectsApi) -> list[tuple[str, int]]:
    route = custom.get_namespaced_custom_object(*REVIEWS)["spec"]["http"][0]["route"]
    return [(r["destination"]["subset"], r["weight"]) for r in route]


def _set_weights(custom: client.CustomObjectsApi, weights: dict[str, int]) -> dict[str, Any]:
    route = [{"destination": {"host": "reviews", "subset": s}, "weight": w} for s, w in weights.items()]
    return custom.patch_namespaced_custom_object(*REVIEWS, {"spec": {"http": [{"route": route}]}})


# CLI and seeds ------------------------------------------------------------------------


def test_cli_prints_url_and_writes_ready_file(meshsim: MeshsimProcess) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", meshsim.url)
    stdout = (meshsim.workdir / "stdout.log").read_text()
    assert f"meshsim staging listening on {meshsim.url}\n" in stdout
    assert requests.get(meshsim.url + "/meshsim/healthz", timeout=10).json() == {
        "status": "ok",
        "name": "staging",
    }


@pytest.mark.parametrize("seed", [STAGING_SEED, PROD_SEED], ids=["staging", "prod"])
def test_every_seed_object_survives_validation(
    meshsim: MeshsimProcess, meshsim_prod: MeshsimProcess, seed: Path
) -> None:
    server = meshsim if seed == STAGING_SEED else meshsim_prod
    state = server.admin("GET", "state").json()
    stored = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in state}
    documents = [doc for doc in yaml.safe_load_all(seed.read_text()) if doc]
    assert len(documents) >= 50
    for doc in documents:
        meta = doc["metadata"]
        found = stored[(doc["kind"], meta.get("namespace", ""), meta["name"])]
        assert found["metadata"].get("labels", {}).items() >= meta.get("labels", {}).items()
        if "." in doc["apiVersion"].partition("/")[0]:  # custom resources are pruned to their schema
            assert found["spec"] == doc["spec"], f"{doc['kind']} {meta['name']} was pruned"


def test_staging_and_prod_differ_as_documented(meshsim: MeshsimProcess, meshsim_prod: MeshsimProcess) -> None:
    with kube_api_client(meshsim.url) as staging, kube_api_client(meshsim_prod.url) as prod:
        assert _weights(client.CustomObjectsApi(staging)) == [("v1", 90), ("v2", 10)]
        assert _weights(client.CustomObjectsApi(prod)) == [("v1", 100)]
        modes = {}
        for name, api in (("staging", staging), ("prod", prod)):
            mesh = client.CustomObjectsApi(api).get_namespaced_custom_object(
                SECURITY, "v1", "istio-system", "peerauthentications", "default"
            )
            modes[name] = mesh["spec"]["mtls"]["mode"]
        assert modes == {"staging": "PERMISSIVE", "prod": "STRICT"}


def test_two_clusters_are_independent(meshsim: MeshsimProcess, meshsim_prod: MeshsimProcess) -> None:
    with kube_api_client(meshsim.url) as staging, kube_api_client(meshsim_prod.url) as prod:
        _set_weights(client.CustomObjectsApi(staging), {"v3": 100})
        client.CoreV1Api(prod).create_namespace({"metadata": {"name": "only-in-prod"}})
        assert _weights(client.CustomObjectsApi(staging)) == [("v3", 100)]
        assert _weights(client.CustomObjectsApi(prod)) == [("v1", 100)]
        with pytest.raises(ApiException) as raised:
            client.CoreV1Api(staging).read_namespace("only-in-prod")
        assert raised.value.status == 404


def test_reset_restores_the_seed(meshsim: MeshsimProcess) -> None:
    with kube_api_client(meshsim.url) as api:
        custom = client.CustomObjectsApi(api)
        custom.delete_namespaced_custom_object(*REVIEWS)
        assert meshsim.admin("POST", "reset").status_code == 200
        assert _weights(custom) == [("v1", 90), ("v2", 10)]


def test_bad_seed_fails_start_with_message(tmp_path: Path) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: broken, namespace: default}\nspec: {hosts: broken}\n"
    )
    with pytest.raises(RuntimeError) as raised:
        start_meshsim(tmp_path, name="bad", seeds=[seed])
    assert "exited with 2" in str(raised.value)
    assert "VirtualService rejected" in str(raised.value)
    assert "spec.hosts in body must be of type array" in str(raised.value)


# persistence -------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "staging-state.json"
    first = start_meshsim(tmp_path, extra_args=["--state-file", str(state_file)])
    try:
        with kube_api_client(first.url) as api:
            custom = client.CustomObjectsApi(api)
            patched = _set_weights(custom, {"v1": 50, "v3": 50})
            client.CoreV1Api(api).delete_namespace("shop")
    finally:
        assert first.stop() == 0
    saved = json.loads(state_file.read_text())
    assert saved["name"] == "staging" and saved["resourceVersion"] >= int(patched["metadata"]["resourceVersion"])

    second = start_meshsim(tmp_path, extra_args=["--state-file", str(state_file)])
    try:
        with kube_api_client(second.url) as api:
            custom = client.CustomObjectsApi(api)
            reloaded = custom.get_namespaced_custom_object(*REVIEWS)
            assert _weights(custom) == [("v1", 50), ("v3", 50)]
            assert reloaded["metadata"]["uid"] == patched["metadata"]["uid"]
            assert reloaded["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
            assert reloaded["metadata"]["generation"] == 2
            with pytest.raises(ApiException) as raised:
                client.CoreV1Api(api).read_namespace("shop")
            assert raised.value.status == 404
            later = _set_weights(custom, {"v1": 100})
            assert int(later["metadata"]["resourceVersion"]) > int(saved["resourceVersion"])
    finally:
        assert second.stop() == 0


def test_sigint_saves_and_exits_cleanly(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    server = start_meshsim(tmp_path, extra_args=["--state-file", str(state_file)])
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(10) == 0
    saved = json.loads(state_file.read_text())
    assert {obj["metadata"]["name"] for obj in saved["objects"] if obj["kind"] == "Namespace"} >= {
        "bookinfo",
        "shop",
        "istio-system",
    }


def test_writes_are_saved_without_stopping(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    server = start_meshsim(tmp_path, extra_args=["--state-file", str(state_file)])
    try:
        with kube_api_client(server.url) as api:
            patched = _set_weights(client.CustomObjectsApi(api), {"v2": 100})
        deadline = time.monotonic() + 60  # a deadline: the write lands at once on an idle machine
        while time.monotonic() < deadline:
            if state_file.is_file() and json.loads(state_file.read_text())["resourceVersion"] >= int(
                patched["metadata"]["resourceVersion"]
            ):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the state file was not written after a write")
        assert server.admin("POST", "save").json() == {"saved": str(state_file)}
    finally:
        server.stop()


def test_save_without_state_file_is_400(meshsim: MeshsimProcess) -> None:
    response = meshsim.admin("POST", "save")
    assert response.status_code == 400
    assert "--state-file" in response.json()["message"]


def test_state_endpoint_lists_objects(meshsim: MeshsimProcess) -> None:
    state = meshsim.admin("GET", "state").json()
    kinds = {obj["kind"] for obj in state}
    assert {"Namespace", "Service", "Pod", "VirtualService", "Sidecar"} <= kinds
    assert "CustomResourceDefinition" not in kinds


# auth --------------------------------------------------------------------------------


def test_token_auth(tmp_path: Path) -> None:
    server = start_meshsim(tmp_path, name="secured", seeds=[STAGING_SEED], extra_args=["--token", "s3cret"])
    try:
        with kube_api_client(server.url) as anonymous:
            with pytest.raises(ApiException) as raised:
                client.CoreV1Api(anonymous).list_namespace()
            assert raised.value.status == 401
            assert status_body(raised.value)["reason"] == "Unauthorized"
        with kube_api_client(server.url, token="wrong") as wrong:
            with pytest.raises(ApiException) as rejected:
                client.CustomObjectsApi(wrong).get_namespaced_custom_object(*REVIEWS)
            assert rejected.value.status == 401
        with kube_api_client(server.url, token="s3cret") as authorized:
            assert _weights(client.CustomObjectsApi(authorized)) == [("v1", 90), ("v2", 10)]
        assert requests.get(server.url + "/meshsim/healthz", timeout=10).status_code == 200
        assert requests.get(server.url + "/meshsim/state", timeout=10).status_code == 401
        assert server.admin("GET", "state").status_code == 200
    finally:
        server.stop()


# faults ------------------------------------------------------------------------------


def test_forced_500_once(meshsim: MeshsimProcess) -> None:
    fault = {
        "match": {"method": "PATCH", "path_regex": "/virtualservices/reviews$"},
        "status": 500,
        "count": 1,
    }
    created = meshsim.admin("POST", "faults", json=fault)
    assert created.status_code == 201 and created.json()["count"] == 1
    with kube_api_client(meshsim.url) as api:
        custom = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as raised:
            _set_weights(custom, {"v1": 100})
        assert raised.value.status == 500
        assert status_body(raised.value)["reason"] == "InternalError"
        assert _weights(custom) == [("v1", 90), ("v2", 10)]  # GET is not matched
        _set_weights(custom, {"v1": 100})
        assert _weights(custom) == [("v1", 100)]
    assert meshsim.admin("GET", "faults").json() == {"faults": []}


def test_forced_409_until_cleared(meshsim: MeshsimProcess) -> None:
    meshsim.admin("POST", "faults", json={"match": {"path_regex": "virtualservices"}, "status": 409})
    with kube_api_client(meshsim.url) as api:
        custom = client.CustomObjectsApi(api)
        for _ in range(2):
            with pytest.raises(ApiException) as raised:
                custom.get_namespaced_custom_object(*REVIEWS)
            assert raised.value.status == 409
            assert status_body(raised.value)["reason"] == "Conflict"
        assert meshsim.admin("DELETE", "faults").status_code == 200
        assert custom.get_namespaced_custom_object(*REVIEWS)["metadata"]["name"] == "reviews"


def test_delay_and_client_timeout(meshsim: MeshsimProcess) -> None:
    meshsim.admin("POST", "faults", json={"match": {"method": "GET", "path_regex": "/pods$"}, "delay_ms": 600})
    with kube_api_client(meshsim.url) as api:
        core = client.CoreV1Api(api)
        started = time.monotonic()
        assert core.list_namespaced_pod("bookinfo").items
        assert time.monotonic() - started >= 0.6
        with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:  # urllib3 retries first
            core.list_namespaced_pod("bookinfo", _request_timeout=(5, 0.2))
        assert isinstance(raised.value.reason, urllib3.exceptions.ReadTimeoutError)
        assert core.list_namespaced_service("bookinfo").items  # other paths are not delayed


def test_reset_clears_faults(meshsim: MeshsimProcess) -> None:
    meshsim.admin("POST", "faults", json={"status": 503})
    assert requests.get(meshsim.url + "/api/v1/namespaces", timeout=10).status_code == 503
    meshsim.reset()
    assert requests.get(meshsim.url + "/api/v1/namespaces", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "spec",
    [{"match": {"path_regex": "("}, "status": 500}, {"status": 200}, {"match": {}}, [1]],
)
def test_invalid_fault_is_400(meshsim: MeshsimProcess, spec: Any) -> None:
    assert meshsim.admin("POST", "faults", json=spec).status_code == 400


# CRD file location ---------------------------------------------------------------------


def test_missing_crd_file_stops_start_with_the_options(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as raised:
        start_meshsim(tmp_path, seeds=[], crd_file=tmp_path / "nope.yaml")
    message = str(raised.value)
    assert "nope.yaml does not exist" in message
    assert "1. pass --crds PATH or set MESHSIM_CRD_FILE=PATH" in message
    assert "2. place the Istio reference file at" in message
    assert "3. allow a one-time download of Istio 1.28.0" in message


def test_locate_crd_file_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("kind: CustomResourceDefinition\n")
    from_env = tmp_path / "env.yaml"
    from_env.write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setenv("MESHSIM_CRD_FILE", str(from_env))
    assert crds.locate_crd_file(explicit) == explicit
    assert crds.locate_crd_file() == from_env
    monkeypatch.delenv("MESHSIM_CRD_FILE")
    assert crds.locate_crd_file() == crds.REFERENCE_FILE

    monkeypatch.setattr(crds, "REFERENCE_FILE", tmp_path / "absent" / "crd-all.gen.yaml")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "meshgate" / "istio-1.28.0-crd-all.gen.yaml"
    cached.parent.mkdir(parents=True)
    cached.write_text("kind: CustomResourceDefinition\n")
    assert crds.locate_crd_file() == cached


def test_failed_download_explains_the_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MESHSIM_CRD_FILE", raising=False)
    monkeypatch.setattr(crds, "REFERENCE_FILE", tmp_path / "absent" / "crd-all.gen.yaml")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    requested = []

    def offline(url: str, timeout: float) -> None:
        requested.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(crds.CrdFileError) as raised:
        crds.locate_crd_file()
    assert requested == [
        "https://raw.githubusercontent.com/istio/istio/1.28.0/manifests/charts/base/files/crd-all.gen.yaml"
    ]
    assert "could not download the Istio CRDs" in str(raised.value)
    assert "MESHSIM_CRD_FILE" in str(raised.value)
    assert not (tmp_path / "cache" / "meshgate" / "istio-1.28.0-crd-all.gen.yaml").exists()
