"""The traffic model: routing, faults, security, canary label and the /metrics exposition.

The session ``meshsim`` runs without ``--traffic``: time only moves with
``POST /meshsim/traffic/advance`` and the RNG is re-seeded on reset, so these tests are
deterministic. Tolerances are still derived from the binomial standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from integrations.meshsim.traffic import DURATION_BUCKETS_MS, ISTIO_LABELS
from integrations.prometheus.fallback import bucket_quantile
from tests.fixtures.meshsim import MeshsimProcess, start_meshsim

from .conftest import NETWORKING, SECURITY

Sample = tuple[dict[str, str], float]


# helpers ---------------------------------------------------------------------------------------


def advance(meshsim: MeshsimProcess, seconds: float) -> None:
    response = meshsim.admin("POST", "traffic/advance", json={"seconds": seconds})
    assert response.status_code == 200, response.text


def scrape(meshsim: MeshsimProcess) -> dict[str, list[Sample]]:
    """Samples by sample name (``istio_requests_total``, ``..._bucket``, ...)."""
    response = requests.get(f"{meshsim.url}/metrics", timeout=10)
    assert response.status_code == 200
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: dict[str, list[Sample]], name: str = "istio_requests_total", **match: str) -> float:
    def selected(labels: dict[str, str]) -> bool:
        for key, wanted in match.items():
            value = labels.get(key.rstrip("_"), "")
            if key.endswith("_") and value.startswith(wanted):  # prefix match: code_="5"
                continue
            if value != wanted:
                return False
        return True

    return sum(value for labels, value in samples.get(name, []) if selected(labels))


def delta(before: dict[str, list[Sample]], after: dict[str, list[Sample]], **match: str) -> float:
    return total(after, **match) - total(before, **match)


def since(before: dict[str, list[Sample]], after: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    """What the counters gained between two scrapes."""
    result: dict[str, list[Sample]] = {}
    for name, samples in after.items():
        earlier = {frozenset(labels.items()): value for labels, value in before.get(name, [])}
        result[name] = [(labels, value - earlier.get(frozenset(labels.items()), 0.0)) for labels, value in samples]
    return result


def p99(samples: dict[str, list[Sample]], **match: str) -> float:
    buckets: dict[float, float] = {}
    for labels, value in samples.get("istio_request_duration_milliseconds_bucket", []):
        if all(labels.get(k) == v for k, v in match.items()):
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    return bucket_quantile(0.99, buckets.items())


def within_binomial(count: float, n: float, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


REVIEWS_VS = (NETWORKING, "v1", "bookinfo", "virtualservices", "reviews")
REVIEWS_DR = (NETWORKING, "v1", "bookinfo", "destinationrules", "reviews")
BOOKINFO = {"destination_service_namespace": "bookinfo", "destination_service_name": "reviews"}


def set_reviews_route(custom: client.CustomObjectsApi, route: list[dict[str, Any]], **extra: Any) -> None:
    current = custom.get_namespaced_custom_object(*REVIEWS_VS)
    current["spec"]["http"] = [{"route": route, **extra}]
    custom.replace_namespaced_custom_object(*REVIEWS_VS, current)


def weights(**by_subset: int) -> list[dict[str, Any]]:
    return [
        {"destination": {"host": "reviews", "subset": subset.replace("_", "-")}, "weight": weight}
        for subset, weight in by_subset.items()
    ]


def authorization_policy(name: str, spec: dict[str, Any], **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{SECURITY}/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "bookinfo", "annotations": annotations},
        "spec": spec,
    }


DENY_PRODUCTPAGE = {
    "action": "DENY",
    "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]}}]}],
}


@pytest.fixture
def meshsim_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshsimProcess]:
    process = start_meshsim(tmp_path_factory.mktemp("meshsim-token"), extra_args=["--token", "s3cret"])
    yield process
    process.stop()


# exposition ------------------------------------------------------------------------------------


def test_metrics_parse_as_istio_metrics(meshsim: MeshsimProcess) -> None:
    advance(meshsim, 10)
    response = requests.get(f"{meshsim.url}/metrics", timeout=10)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["istio_requests"].type == "counter"
    assert families["istio_request_duration_milliseconds"].type == "histogram"
    assert families["meshsim_authz_dry_run_denials"].type == "counter"
    assert families["meshsim_traffic_simulated_seconds"].samples[0].value == 10.0
    requests_total = families["istio_requests"].samples
    assert requests_total and all(s.name == "istio_requests_total" for s in requests_total)
    assert all(set(ISTIO_LABELS) <= set(s.labels) for s in requests_total)
    assert {s.labels["reporter"] for s in requests_total} == {"destination"}
    bounds = sorted(
        {
            float(s.labels["le"])
            for s in families["istio_request_duration_milliseconds"].samples
            if s.name.endswith("_bucket")
        }
    )
    assert bounds == [*map(float, DURATION_BUCKETS_MS), math.inf]
    v1 = next(
        s.labels
        for s in requests_total
        if s.labels["destination_workload"] == "reviews-v1" and s.labels["response_code"] == "200"
    )
    assert v1 | {"destination_canary": "false"} == {
        **v1,
        "source_workload": "productpage-v1",
        "source_workload_namespace": "bookinfo",
        "source_principal": "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage",
        "source_app": "productpage",
        "source_version": "v1",
        "destination_workload_namespace": "bookinfo",
        "destination_principal": "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews",
        "destination_app": "reviews",
        "destination_version": "v1",
        "destination_service": "reviews.bookinfo.svc.cluster.local",
        "destination_service_name": "reviews",
        "destination_service_namespace": "bookinfo",
        "request_protocol": "http",
        "response_flags": "-",
        "connection_security_policy": "mutual_tls",
    }
    # histogram _count equals the request counter for every series
    samples = scrape(meshsim)
    assert total(samples, "istio_request_duration_milliseconds_count") == total(samples)


def test_metrics_need_no_token_but_traffic_admin_does(meshsim_token: MeshsimProcess) -> None:
    assert requests.get(f"{meshsim_token.url}/metrics", timeout=10).status_code == 200
    assert requests.get(f"{meshsim_token.url}/meshsim/traffic", timeout=10).status_code == 401
    assert meshsim_token.admin("GET", "traffic").status_code == 200


def test_same_seed_same_traffic(meshsim: MeshsimProcess) -> None:
    advance(meshsim, 20)
    first = requests.get(f"{meshsim.url}/metrics", timeout=10).text
    meshsim.reset()
    advance(meshsim, 20)
    assert requests.get(f"{meshsim.url}/metrics", timeout=10).text == first


def test_advance_and_fault_specs_are_validated(meshsim: MeshsimProcess) -> None:
    for seconds in (0, -1, 3601, "10", None):
        response = meshsim.admin("POST", "traffic/advance", json={"seconds": seconds})
        assert response.status_code == 400, seconds
    for spec in (
        {"namespace": "bookinfo", "error_rate": 0.1},
        {"service": "reviews", "namespace": "bookinfo"},
        {"service": "reviews", "error_rate": 1.5},
        {"service": "reviews", "error_rate": 0.1, "status": 200},
        {"service": "reviews", "error_rate": 0.1, "version": "v1", "canary": True},
        {"service": "reviews", "error_rate": 0.1, "colour": "red"},
    ):
        response = meshsim.admin("POST", "traffic/faults", json=spec)
        assert response.status_code == 400, spec
        assert response.json()["kind"] == "Status"
    assert meshsim.admin("PUT", "traffic/faults").status_code == 405
    assert meshsim.admin("DELETE", "traffic/faults/99").status_code == 404


# routing ---------------------------------------------------------------------------------------


def test_traffic_follows_virtual_service_weights(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    set_reviews_route(custom, weights(v1=80, v2=20))
    advance(meshsim, 60)
    samples = scrape(meshsim)
    v1 = total(samples, destination_version="v1", **BOOKINFO)
    v2 = total(samples, destination_version="v2", **BOOKINFO)
    assert total(samples, destination_version="v3", **BOOKINFO) == 0
    n = v1 + v2
    assert abs(n - 60 * 20) <= 4 * math.sqrt(60 * 20)  # Poisson: 20 rps for a minute
    assert within_binomial(v2, n, 0.2), (v1, v2)

    # a change through the Kubernetes API applies at the next tick
    set_reviews_route(custom, weights(v3=100))
    before = scrape(meshsim)
    advance(meshsim, 10)
    after = scrape(meshsim)
    assert delta(before, after, destination_version="v3", **BOOKINFO) > 150
    assert delta(before, after, destination_version="v1", **BOOKINFO) == 0


def test_without_virtual_service_versions_share_evenly(
    meshsim: MeshsimProcess, custom: client.CustomObjectsApi
) -> None:
    custom.delete_namespaced_custom_object(*REVIEWS_VS)
    advance(meshsim, 60)
    samples = scrape(meshsim)
    counts = [total(samples, destination_version=v, **BOOKINFO) for v in ("v1", "v2", "v3")]
    for count in counts:
        assert within_binomial(count, sum(counts), 1 / 3), counts


def test_summary_and_rate_overrides(meshsim: MeshsimProcess) -> None:
    summary = meshsim.admin("GET", "traffic").json()
    assert summary["running"] is False and summary["tick_seconds"] == 0.25
    reviews = next(s for s in summary["services"] if s["service"] == "reviews")
    assert reviews["rps"] == 20.0
    assert [(r["version"], r["share"]) for r in reviews["routing"]] == [("v1", 0.9), ("v2", 0.1)]
    assert reviews["callers"][0]["source_workload"] == "productpage-v1"

    response = meshsim.admin("POST", "traffic/rates", json={"namespace": "bookinfo", "service": "reviews", "rps": 0})
    assert response.status_code == 200
    advance(meshsim, 10)
    samples = scrape(meshsim)
    assert total(samples, **BOOKINFO) == 0
    assert total(samples, destination_service_name="details") > 0

    meshsim.admin("POST", "traffic/rates", json={"namespace": "bookinfo", "service": "reviews", "rps": 100})
    before = scrape(meshsim)
    advance(meshsim, 10)
    assert abs(delta(before, scrape(meshsim), **BOOKINFO) - 1000) <= 4 * math.sqrt(1000)


# fault profiles --------------------------------------------------------------------------------


def test_503_fault_on_v2_leaves_v1_clean(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    set_reviews_route(custom, weights(v1=50, v2=50))
    fault = {
        "service": "reviews",
        "namespace": "bookinfo",
        "version": "v2",
        "error_rate": 0.05,
        "status": 503,
    }
    created = meshsim.admin("POST", "traffic/faults", json=fault)
    assert created.status_code == 201 and created.json()["active"] is True
    advance(meshsim, 120)
    samples = scrape(meshsim)
    v2 = total(samples, destination_version="v2", **BOOKINFO)
    v2_errors = total(samples, destination_version="v2", response_code="503", **BOOKINFO)
    v1 = total(samples, destination_version="v1", **BOOKINFO)
    v1_errors = total(samples, destination_version="v1", response_code_="5", **BOOKINFO)
    assert within_binomial(v2_errors, v2, 0.05 + 0.0005)
    assert v1_errors <= 0.0005 * v1 + 4 * math.sqrt(0.0005 * v1)

    assert meshsim.admin("DELETE", "traffic/faults").json() == {"faults": []}
    before = scrape(meshsim)
    advance(meshsim, 60)
    after = scrape(meshsim)
    new_v2 = delta(before, after, destination_version="v2", **BOOKINFO)
    new_errors = delta(before, after, destination_version="v2", response_code_="5", **BOOKINFO)
    assert new_errors <= 0.0005 * new_v2 + 4 * math.sqrt(0.0005 * new_v2)


def test_extra_latency_shifts_the_p99_bucket(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    set_reviews_route(custom, weights(v1=50, v2=50))
    advance(meshsim, 60)
    before = scrape(meshsim)
    baseline = p99(before, destination_version="v2", destination_service_name="reviews")
    assert 50 < baseline <= 100  # v2: median 12 ms, p99 90 ms: in the (50, 100] bucket
    slower = {
        "service": "reviews",
        "namespace": "bookinfo",
        "version": "v2",
        "extra_latency_ms": 200,
    }
    meshsim.admin("POST", "traffic/faults", json=slower)
    advance(meshsim, 60)
    slow = since(before, scrape(meshsim))
    assert 250 < p99(slow, destination_version="v2", destination_service_name="reviews") <= 500
    assert p99(slow, destination_version="v1", destination_service_name="reviews") <= 100
    v2 = {"destination_version": "v2", "destination_service_name": "reviews"}
    mean = total(slow, "istio_request_duration_milliseconds_sum", **v2) / total(slow, **v2)
    assert 200 < mean < 250


def test_faults_scoped_to_canary_traffic_and_to_a_policy(
    meshsim: MeshsimProcess, custom: client.CustomObjectsApi
) -> None:
    dr = custom.get_namespaced_custom_object(*REVIEWS_DR)
    dr["spec"]["subsets"].append({"name": "v1-canary", "labels": {"version": "v1"}})
    custom.replace_namespaced_custom_object(*REVIEWS_DR, dr)
    set_reviews_route(custom, weights(v1=50, v1_canary=50))
    meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "canary": True, "error_rate": 0.5},
    )
    gone = {"kind": "VirtualService", "namespace": "bookinfo", "name": "no-such-policy"}
    created = meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "error_rate": 1.0, "policy": gone},
    ).json()
    assert created["active"] is False
    advance(meshsim, 30)
    samples = scrape(meshsim)
    canary = total(samples, destination_canary="true", **BOOKINFO)
    assert within_binomial(total(samples, destination_canary="true", response_code="503", **BOOKINFO), canary, 0.5)
    stable = total(samples, destination_canary="false", **BOOKINFO)
    assert total(samples, destination_canary="false", response_code="503", **BOOKINFO) < 0.01 * stable


def test_virtual_service_fault_injection(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    fault = {
        "abort": {"percentage": {"value": 30}, "httpStatus": 500},
        "delay": {"percentage": {"value": 100}, "fixedDelay": "1s"},
    }
    set_reviews_route(custom, weights(v1=100), fault=fault)
    advance(meshsim, 30)
    samples = scrape(meshsim)
    n = total(samples, **BOOKINFO)
    aborted = total(samples, response_code="500", response_flags="FI", **BOOKINFO)
    assert within_binomial(aborted, n, 0.3)
    delayed = total(samples, response_flags="DI", **BOOKINFO)
    assert delayed + aborted + total(samples, response_code="504", **BOOKINFO) == n
    assert p99(samples, response_flags="DI", destination_service_name="reviews") > 1000


def test_route_timeout_answers_504(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    set_reviews_route(custom, weights(v1=100), timeout="0.02s")  # v1: median 8 ms, p99 60 ms
    advance(meshsim, 30)
    samples = scrape(meshsim)
    timeouts = total(samples, response_code="504", response_flags="UT", **BOOKINFO)
    assert 0 < timeouts < 0.5 * total(samples, **BOOKINFO)


def test_unknown_subset_and_no_route(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    set_reviews_route(custom, weights(v1=50, v9=50))
    advance(meshsim, 10)
    samples = scrape(meshsim)
    assert (
        total(
            samples,
            response_code="503",
            response_flags="NC",
            destination_version="unknown",
            **BOOKINFO,
        )
        > 0
    )
    current = custom.get_namespaced_custom_object(*REVIEWS_VS)
    current["spec"]["http"] = [{"match": [{"uri": {"prefix": "/elsewhere"}}], "route": weights(v1=100)}]
    custom.replace_namespaced_custom_object(*REVIEWS_VS, current)
    before = scrape(meshsim)
    advance(meshsim, 10)
    after = scrape(meshsim)
    assert (
        delta(before, after, **BOOKINFO)
        == delta(before, after, response_code="404", response_flags="NR", **BOOKINFO)
        > 0
    )


# destination rule traffic policy ---------------------------------------------------------------


def test_outlier_detection_ejects_a_failing_version(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    # No VirtualService: catalog's cluster holds v1 and v2, so ejecting v2 moves its share.
    custom.delete_namespaced_custom_object(NETWORKING, "v1", "shop", "virtualservices", "catalog")
    meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "catalog", "namespace": "shop", "version": "v2", "error_rate": 1.0},
    )
    advance(meshsim, 5)
    samples = scrape(meshsim)
    ejected = [
        labels
        for labels, value in samples["meshsim_outlier_ejected"]
        if value == 1 and labels["destination_service_name"] == "catalog"
    ]
    assert [labels["destination_version"] for labels in ejected] == ["v2"]
    before = samples
    advance(meshsim, 20)  # baseEjectionTime 60s: still ejected
    after = scrape(meshsim)
    catalog = {"destination_service_name": "catalog"}
    assert delta(before, after, destination_version="v2", **catalog) == 0
    assert delta(before, after, destination_version="v1", **catalog) > 250

    summary = meshsim.admin("GET", "traffic").json()
    routing = next(s for s in summary["services"] if s["service"] == "catalog")["routing"]
    assert [(r["version"], r["share"]) for r in routing] == [("v1", 1.0)]


def test_connection_pool_overflow(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    dr = custom.get_namespaced_custom_object(*REVIEWS_DR)
    dr["spec"]["trafficPolicy"] = {
        "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}
    }
    custom.replace_namespaced_custom_object(*REVIEWS_DR, dr)
    set_reviews_route(custom, weights(v1=100))
    meshsim.admin(
        "POST",
        "traffic/faults",
        json={"service": "reviews", "namespace": "bookinfo", "extra_latency_ms": 1000},
    )
    advance(meshsim, 20)
    samples = scrape(meshsim)
    # in flight ≈ 20 rps × 1.012 s (mean latency) > capacity 2: 1 - 2/20.2 ≈ 90 % overflow
    overflow = total(samples, response_code="503", response_flags="UO", **BOOKINFO)
    assert within_binomial(overflow, total(samples, **BOOKINFO), 0.9, sigmas=6)


# security --------------------------------------------------------------------------------------


def test_authorization_deny_answers_403_to_that_caller_only(
    meshsim: MeshsimProcess, custom: client.CustomObjectsApi
) -> None:
    advance(meshsim, 10)
    assert total(scrape(meshsim), response_code="403") == 0  # the seeded ALLOW policies fit the traffic
    custom.create_namespaced_custom_object(
        SECURITY,
        "v1",
        "bookinfo",
        "authorizationpolicies",
        authorization_policy("deny-productpage", DENY_PRODUCTPAGE),
    )
    before = scrape(meshsim)
    advance(meshsim, 20)
    after = scrape(meshsim)
    from_productpage = {"source_workload": "productpage-v1"}
    sent = delta(before, after, **from_productpage)
    assert sent > 0
    assert delta(before, after, response_code="403", response_flags="-", **from_productpage) == sent
    assert delta(before, after, response_code="403") == sent  # reviews → ratings, gateway → productpage pass
    assert delta(before, after, source_workload="reviews-v2", response_code="200") > 0


def test_allow_list_denies_callers_it_does_not_name(meshsim: MeshsimProcess, custom: client.CustomObjectsApi) -> None:
    spec = {
        "selector": {"matchLabels": {"app": "reviews"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"namespaces": ["shop"]}}],
                "to": [{"operation": {"methods": ["GET"]}}],
            }
        ],
    }
    custom.create_namespaced_custom_object(
        SECURITY,
        "v1",
        "bookinfo",
        "authorizationpolicies",
        authorization_policy("reviews-shop-only", spec),
    )
    advance(meshsim, 10)
    samples = scrape(meshsim)
    assert total(samples, response_code="403", **BOOKINFO) == total(samples, **BOOKINFO) > 0
    assert total(samples, response_code="403", destination_service_name="details") == 0


def test_dry_run_policy_counts_shadow_denials_without_denying(
    meshsim: MeshsimProcess, custom: client.CustomObjectsApi
) -> None:
    policy = authorization_policy("deny-productpage", DENY_PRODUCTPAGE, **{"istio.io/dry-run": "true"})
    custom.create_namespaced_custom_object(SECURITY, "v1", "bookinfo", "authorizationpolicies", policy)
    advance(meshsim, 20)
    samples = scrape(meshsim)
    assert total(samples, response_code="403") == 0
    shadow = samples["meshsim_authz_dry_run_denials_total"]
    assert {(labels["namespace"], labels["policy"], labels["source_workload"]) for labels, _ in shadow} == {
        ("bookinfo", "deny-productpage", "productpage-v1")
    }
    # like Istio's series, the counter names the cluster it was counted in
    assert {labels["destination_cluster"] for labels, _ in shadow} == {meshsim.name}
    assert {labels["destination_workload"] for labels, _ in shadow} == {
        "details-v1",
        "reviews-v1",
        "reviews-v2",
    }
    denials = sum(value for _, value in shadow)
    assert denials == total(samples, source_workload="productpage-v1") > 0

    # enforcing it (dropping the annotation) turns the shadow denials into 403s
    policy = custom.get_namespaced_custom_object(
        SECURITY, "v1", "bookinfo", "authorizationpolicies", "deny-productpage"
    )
    policy["metadata"]["annotations"] = {}
    custom.replace_namespaced_custom_object(
        SECURITY, "v1", "bookinfo", "authorizationpolicies", "deny-productpage", policy
    )
    before = scrape(meshsim)
    advance(meshsim, 10)
    after = scrape(meshsim)
    assert delta(before, after, response_code="403") == delta(before, after, source_workload="productpage-v1") > 0
    assert sum(v for _, v in after["meshsim_authz_dry_run_denials_total"]) == denials


def _set_shop_mtls(custom: client.CustomObjectsApi, mode: str) -> None:
    pa = custom.get_namespaced_custom_object(SECURITY, "v1", "shop", "peerauthentications", "default")
    pa["spec"]["mtls"]["mode"] = mode
    custom.replace_namespaced_custom_object(SECURITY, "v1", "shop", "peerauthentications", "default", pa)


def test_peer_authentication_strict_breaks_the_plaintext_caller(
    meshsim: MeshsimProcess, custom: client.CustomObjectsApi
) -> None:
    catalog = {"destination_service_name": "catalog", "destination_service_namespace": "shop"}
    plaintext = {"connection_security_policy": "none", **catalog}
    advance(meshsim, 20)  # staging: shop is PERMISSIVE
    samples = scrape(meshsim)
    assert total(samples, response_code="200", source_workload="unknown", **plaintext) > 0
    assert total(samples, response_code="0", **catalog) == 0
    assert (
        total(
            samples,
            source_workload="frontend-v1",
            connection_security_policy="mutual_tls",
            **catalog,
        )
        > 0
    )

    _set_shop_mtls(custom, "STRICT")
    before = scrape(meshsim)
    advance(meshsim, 20)
    after = scrape(meshsim)
    broken = delta(before, after, response_code="0", response_flags="UF", **plaintext)
    assert broken == delta(before, after, **plaintext) > 0
    assert delta(before, after, response_code="0", source_workload="frontend-v1") == 0
    assert delta(before, after, response_code="200", source_workload="frontend-v1", **catalog) > 0

    _set_shop_mtls(custom, "PERMISSIVE")
    before = scrape(meshsim)
    advance(meshsim, 20)
    after = scrape(meshsim)
    assert delta(before, after, response_code="0", **catalog) == 0
    assert delta(before, after, response_code="200", **plaintext) > 0


# canary label ----------------------------------------------------------------------------------


@pytest.mark.parametrize("marking", ["subset-name", "subset-label", "dr-annotation", "route-name"])
def test_canary_traffic_is_labelled(meshsim: MeshsimProcess, custom: client.CustomObjectsApi, marking: str) -> None:
    dr = custom.get_namespaced_custom_object(*REVIEWS_DR)
    name = "v1-canary" if marking == "subset-name" else "v1-new"
    labels = {"version": "v1"}
    if marking == "subset-label":
        labels["meshgate.io/canary"] = "true"
    if marking == "dr-annotation":
        dr["metadata"].setdefault("annotations", {})["meshgate.io/canary-subsets"] = name
    dr["spec"]["subsets"].append(
        {
            "name": name,
            "labels": labels,
            "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 50}}},
        }
    )
    custom.replace_namespaced_custom_object(*REVIEWS_DR, dr)
    current = custom.get_namespaced_custom_object(*REVIEWS_VS)
    route = [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 75},
        {"destination": {"host": "reviews", "subset": name}, "weight": 25},
    ]
    if marking == "route-name":  # the whole route is the canary: split it in two routes
        current["spec"]["http"] = [
            {"name": "stable", "match": [{"uri": {"prefix": "/ratings"}}], "route": route[:1]},
            {"name": "reviews-canary", "route": route[1:]},
        ]
    else:
        current["spec"]["http"] = [{"route": route}]
    custom.replace_namespaced_custom_object(*REVIEWS_VS, current)
    advance(meshsim, 40)
    samples = scrape(meshsim)
    canary = total(samples, destination_canary="true", destination_version="v1", **BOOKINFO)
    stable = total(samples, destination_canary="false", destination_version="v1", **BOOKINFO)
    if marking == "route-name":
        assert canary == total(samples, **BOOKINFO) > 0 and stable == 0
    else:
        assert within_binomial(canary, canary + stable, 0.25), (canary, stable)
    assert total(samples, response_code="200", destination_canary="true", **BOOKINFO) > 0


def test_new_service_takes_rate_and_callers_from_annotations(meshsim: MeshsimProcess, core: client.CoreV1Api) -> None:
    service = {
        "metadata": {
            "name": "echo",
            "annotations": {"meshsim.io/rps": "5", "meshsim.io/callers": "productpage,shop/frontend"},
        },
        "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 8080}]},
    }
    pod = {
        "metadata": {"name": "echo-v1-5f8d7c6b9-x2m4v", "labels": {"app": "echo", "version": "v1"}},
        "spec": {"containers": [{"name": "echo", "image": "echo:1"}]},
    }
    core.create_namespaced_service("bookinfo", service)
    core.create_namespaced_pod("bookinfo", pod)
    # the plaintext legacy caller can be switched off by its own rate
    off = {"namespace": "shop", "service": "catalog", "source": "legacy-batch", "rps": 0}
    assert meshsim.admin("POST", "traffic/rates", json=off).status_code == 200
    advance(meshsim, 40)
    samples = scrape(meshsim)
    echo = {"destination_workload": "echo-v1", "destination_service_name": "echo"}
    n = total(samples, **echo)
    assert abs(n - 200) <= 4 * math.sqrt(200)
    assert within_binomial(total(samples, source_workload="frontend-v1", **echo), n, 0.5)
    assert total(samples, connection_security_policy="none") == 0
