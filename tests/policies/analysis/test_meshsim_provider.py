"""The demo fallback provider against meshsim's /metrics (simulated time, no Prometheus)."""

from __future__ import annotations

import pytest

from policies.analysis import (
    Direction,
    MannWhitneyJudge,
    MeshsimProvider,
    ProviderQueryError,
    Target,
    Verdict,
    custom,
    latency_p99,
    run_interval,
    success_rate,
)
from tests.fixtures.meshsim import MeshsimProcess

CATALOG = {"namespace": "shop", "service": "catalog"}


def test_meshsim_provider_judges_a_faulty_canary(meshsim: MeshsimProcess) -> None:
    now = [0.0]
    provider = MeshsimProvider(meshsim.url, bootstrap_wait_s=0, clock=lambda: now[0])
    provider.fallback.scrape()  # t=0
    fault = {**CATALOG, "version": "v2", "error_rate": 0.3, "status": 503}
    assert meshsim.admin("POST", "traffic/faults", json=fault).ok
    assert meshsim.admin("POST", "traffic/advance", json={"seconds": 120}).ok
    now[0] = 120.0
    result = run_interval(
        provider=provider,
        metrics=[success_rate(), latency_p99()],
        canary=Target(version="v2", **CATALOG),
        stable=Target(version="v1", **CATALOG),
        window="3m",
        judge=MannWhitneyJudge(),
    )
    assert result.verdict == Verdict.FAIL, result.reason
    assert result.metrics[0].canary is not None and 0.6 < result.metrics[0].canary < 0.8
    assert result.reason.startswith("request-success-rate of canary 0.")


def test_meshsim_provider_refuses_custom_promql(meshsim: MeshsimProcess) -> None:
    provider = MeshsimProvider(meshsim.url, bootstrap_wait_s=0)
    metric = custom("x", 'x{a="{service}"}', direction=Direction.LOWER_IS_BETTER)
    with pytest.raises(ProviderQueryError, match="needs a real Prometheus"):
        provider.sample(metric, Target(**CATALOG), "1m")


def test_meshsim_provider_counts_by_labels(meshsim: MeshsimProcess) -> None:
    """What ``sum by (...) (increase(...))`` answers, from two scrapes of /metrics."""
    now = [0.0]
    provider = MeshsimProvider(meshsim.url, bootstrap_wait_s=0, clock=lambda: now[0])
    provider.fallback.scrape()  # t=0
    assert meshsim.admin("POST", "traffic/advance", json={"seconds": 60}).ok
    now[0] = 60.0
    match = {"reporter": "destination", "destination_service_namespace": "shop", "destination_service_name": "catalog"}
    by_tls = provider.counts("istio_requests_total", match, by=("connection_security_policy",), window="2m")
    assert set(by_tls) == {("mutual_tls",), ("none",)}  # the legacy batch job has no sidecar
    assert 0 < by_tls[("none",)] < by_tls[("mutual_tls",)]
    total = provider.counts("istio_requests_total", match, window="2m")
    assert list(total) == [()] and total[()] == sum(by_tls.values())
    assert provider.counts("istio_requests_total", {**match, "response_code": "0"}, window="2m") == {}
