"""The adapter against meshsim, over HTTP, through the official client."""

import copy

import pytest

from integrations import kubernetes as kube

REVIEWS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews-canary", "namespace": "bookinfo", "labels": {"app": "reviews"}},
    "spec": {
        "hosts": ["reviews"],
        "http": [
            {
                "route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20},
                ]
            }
        ],
    },
}


@pytest.fixture
def cfg(meshsim):
    return kube.ClusterConfig(api_url=meshsim.url, timeout_seconds=5)


def test_lists_every_supported_kind_from_the_seeded_cluster(cfg):
    found = {kind: kube.list_objects(cfg, kind) for kind in kube.KINDS}
    assert found["VirtualService"], "the seed has VirtualServices"
    assert found["DestinationRule"] and found["AuthorizationPolicy"] and found["PeerAuthentication"]
    for kind, objects in found.items():
        assert all(obj["kind"] == kind for obj in objects)
    bookinfo = kube.list_objects(cfg, "VirtualService", namespace="bookinfo")
    assert {o["metadata"]["namespace"] for o in bookinfo} == {"bookinfo"}


def test_apply_creates_then_updates_with_the_meshgate_field_manager(cfg):
    created = kube.apply_object(cfg, REVIEWS)
    assert created["metadata"]["generation"] == 1
    managers = {entry["manager"] for entry in created["metadata"].get("managedFields", [])}
    assert "meshgate" in managers
    changed = copy.deepcopy(REVIEWS)
    changed["spec"]["http"][0]["route"][0]["weight"] = 50
    changed["spec"]["http"][0]["route"][1]["weight"] = 50
    updated = kube.apply_object(cfg, changed)
    assert updated["metadata"]["generation"] == 2
    live = kube.get_object(cfg, "VirtualService", "bookinfo", "reviews-canary")
    assert [r["weight"] for r in live["spec"]["http"][0]["route"]] == [50, 50]


def test_dry_run_validates_but_stores_nothing(cfg):
    answer = kube.apply_object(cfg, REVIEWS, dry_run=True)
    assert answer["metadata"]["name"] == "reviews-canary"
    with pytest.raises(kube.NotFound):
        kube.get_object(cfg, "VirtualService", "bookinfo", "reviews-canary")


def test_stale_resource_version_is_a_conflict(cfg):
    live = kube.apply_object(cfg, REVIEWS)
    stale = copy.deepcopy(REVIEWS)
    stale["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) - 1)
    with pytest.raises(kube.Conflict) as caught:
        kube.apply_object(cfg, stale)
    assert caught.value.status == 409


def test_schema_violation_is_invalid_with_field_paths(cfg):
    broken = copy.deepcopy(REVIEWS)
    broken["spec"]["http"][0]["timeout"] = 5
    with pytest.raises(kube.Invalid) as caught:
        kube.apply_object(cfg, broken)
    assert caught.value.status == 422
    assert any(c.field == "spec.http[0].timeout" for c in caught.value.causes), caught.value.causes


def test_delete_then_not_found(cfg):
    kube.apply_object(cfg, REVIEWS)
    kube.delete_object(cfg, "VirtualService", "bookinfo", "reviews-canary")
    with pytest.raises(kube.NotFound):
        kube.get_object(cfg, "VirtualService", "bookinfo", "reviews-canary")
    with pytest.raises(kube.NotFound):
        kube.delete_object(cfg, "VirtualService", "bookinfo", "reviews-canary")


def test_reads_the_crd_schema_the_cluster_serves(cfg):
    answer = kube.read_crd_schema(cfg, "DestinationRule")
    assert answer["resourceVersion"]
    spec = answer["schema"]["properties"]["spec"]
    assert "trafficPolicy" in spec["properties"] and "subsets" in spec["properties"]


def test_core_objects(cfg):
    namespaces = {ns["metadata"]["name"] for ns in kube.list_namespaces(cfg)}
    assert {"bookinfo", "shop", "istio-system"} <= namespaces
    services = {s["metadata"]["name"] for s in kube.list_services(cfg, namespace="bookinfo")}
    assert {"productpage", "reviews", "ratings", "details"} <= services
    reviews = kube.list_pods(cfg, namespace="bookinfo", label_selector="app=reviews")
    assert {p["metadata"]["labels"]["version"] for p in reviews} == {"v1", "v2", "v3"}


def test_server_version(cfg):
    assert kube.server_version(cfg)


def test_unreachable_cluster_is_reported_as_such():
    cfg = kube.ClusterConfig(api_url="http://127.0.0.1:9", timeout_seconds=2)
    with pytest.raises(kube.Unreachable, match="127.0.0.1:9"):
        kube.server_version(cfg)


def test_a_wrong_token_is_unauthorized(tmp_path):
    from tests.fixtures.meshsim import start_meshsim

    server = start_meshsim(tmp_path, name="secure", extra_args=["--token", "s3cret"])
    try:
        with pytest.raises(kube.Unauthorized):
            kube.list_objects(kube.ClusterConfig(api_url=server.url, token="wrong"), "Gateway")
        assert kube.list_objects(kube.ClusterConfig(api_url=server.url, token="s3cret"), "Gateway") is not None
    finally:
        server.stop()
