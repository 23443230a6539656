"""Layer 4 against meshsim: the API server's own verdict, without anything being stored."""

import pytest

from integrations import kubernetes as kube
from tests.policies.validation.helpers import codes, only

CANARY = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-canary
  namespace: bookinfo
  labels:
    app: reviews
spec:
  hosts: [canary.bookinfo.example.com]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
"""
PATCHES = 1000


@pytest.fixture
def patches(meshsim):
    """Counts the PATCH (server-side apply) requests meshsim receives, by a fault that only delays them."""
    response = meshsim.admin("POST", "faults", json={"match": {"method": "PATCH"}, "delay_ms": 1, "count": PATCHES})
    response.raise_for_status()

    def count() -> int:
        rules = meshsim.admin("GET", "faults").json()["faults"]
        remaining = next((rule["count"] for rule in rules if rule["delay_ms"] == 1), 0)
        return PATCHES - remaining

    return count


def fail_patches(meshsim, status: int) -> None:
    meshsim.admin("POST", "faults", json={"match": {"method": "PATCH"}, "status": status}).raise_for_status()


def stored(meshsim, name: str) -> dict | None:
    try:
        return kube.get_object(kube.ClusterConfig(api_url=meshsim.url), "VirtualService", "bookinfo", name)
    except kube.NotFound:
        return None


def test_a_good_object_passes_the_dry_run_and_nothing_is_stored(validate, meshsim, patches):
    report = validate(CANARY, dry_run=True)
    assert report.findings == []
    assert patches() == 1
    assert stored(meshsim, "reviews-canary") is None


def test_without_dry_run_nothing_is_sent(validate, patches):
    validate(CANARY)
    assert patches() == 0


def test_a_field_the_local_layers_accept_but_the_server_rejects(validate, meshsim):
    report = validate(CANARY.replace("app: reviews", "app: not valid!"), dry_run=True)
    error = only(report, "MG0901")
    assert (error.layer, error.path, error.line) == ("dryrun", "metadata.labels", 6)
    assert error.message.startswith('the API server rejected metadata.labels: Invalid value: "not valid!"')
    assert stored(meshsim, "reviews-canary") is None


@pytest.mark.parametrize("status", [409, 500])
def test_a_server_error_becomes_an_error_finding(validate, meshsim, status):
    fail_patches(meshsim, status)
    report = validate(CANARY, dry_run=True)
    error = only(report, "MG0902")
    assert error.line == 1 and error.object == "VirtualService bookinfo/reviews-canary"
    assert "meshsim injected fault" in error.message


def test_a_namespace_the_cluster_lacks_is_reported_by_the_server(validate):
    moved = CANARY.replace("namespace: bookinfo", "namespace: nowhere").replace(
        "host: reviews,", "host: reviews.bookinfo.svc.cluster.local,"
    )
    report = validate(moved, dry_run=True)
    assert 'namespaces "nowhere" not found' in only(report, "MG0902").message


def test_fields_owned_by_another_tool_are_a_warning_and_the_object_is_still_checked(validate, meshsim):
    # bookinfo/reviews was applied with kubectl: Meshgate's apply conflicts on spec.http.
    edit = CANARY.replace("name: reviews-canary", "name: reviews").replace("[canary.bookinfo.example.com]", "[reviews]")
    report = validate(edit, dry_run=True)
    warning = only(report, "MG0904")
    assert "kubectl-client-side-apply" in warning.message and warning.path == "spec.http"
    assert not report.has_errors
    assert stored(meshsim, "reviews")["spec"]["http"][0]["route"][0]["weight"] == 90, "unchanged"
    invalid = validate(edit.replace("app: reviews", "app: not valid!"), dry_run=True)
    assert sorted(codes(invalid, "dryrun")) == ["MG0901", "MG0904"]


def test_objects_with_errors_in_earlier_layers_are_not_sent(validate, patches):
    broken = (
        CANARY.replace("reviews-canary", "reviews-broken")
        .replace("subset: v3", "subset: v9")
        .replace("canary.bookinfo", "broken.bookinfo")
    )
    report = validate(CANARY + "---\n" + broken, dry_run=True)
    assert codes(report) == ["MG0302"]
    assert patches() == 1
