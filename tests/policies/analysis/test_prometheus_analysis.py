"""One analysis interval against a REAL Prometheus scraping meshsim (traffic in real time).

shop/catalog in staging routes v1 80 % / v2 20 %; the rate is raised so that a short
window holds enough requests, and a 10 % 503 fault is injected on v2 through meshsim's
admin endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from integrations.prometheus import query, success_rate_query
from policies.analysis import (
    Action,
    AnalysisPolicy,
    AnalysisState,
    Direction,
    MannWhitneyJudge,
    PrometheusProvider,
    Target,
    Verdict,
    custom,
    decide,
    latency_p99,
    run_interval,
    success_rate,
)
from tests.fixtures.meshsim import MeshsimProcess
from tests.fixtures.prometheus import PrometheusProcess, wait_for_window_after

CATALOG = {"namespace": "shop", "service": "catalog"}
CANARY = Target(version="v2", **CATALOG)
STABLE = Target(version="v1", **CATALOG)
ERROR_SHARE = custom(
    "error-share",
    '(sum(rate(istio_requests_total{reporter="destination",destination_service_namespace='
    '"{namespace}",destination_service_name="{service}",destination_version="{version}",'
    'response_code=~"5.."}[{interval}])) or vector(0)) / sum(rate(istio_requests_total{reporter='
    '"destination",destination_service_namespace="{namespace}",destination_service_name='
    '"{service}",destination_version="{version}"}[{interval}]))',
    direction=Direction.LOWER_IS_BETTER,
    max=0.01,
)
METRICS = [success_rate(min=0.99), latency_p99(max=500), ERROR_SHARE]
WINDOW = "8s"
WINDOW_S = 8.0


def _warm(meshsim: MeshsimProcess, prom: PrometheusProcess) -> float:
    """The raised rate on, with data in Prometheus; returns when the rate was raised (Unix time)."""
    prom.wait_for_target_up()
    assert meshsim.admin("POST", "traffic/rates", json={**CATALOG, "rps": 300}).ok
    raised = time.time()
    promql = success_rate_query(version="v2", interval="5s", **CATALOG)
    deadline = time.monotonic() + 60
    while not query(prom.url, promql):
        assert time.monotonic() < deadline, "no catalog v2 data in Prometheus after 60 s"
        time.sleep(0.5)
    return raised


def _analyse(prom: PrometheusProcess):
    return run_interval(
        provider=PrometheusProvider(prom.url),
        metrics=METRICS,
        canary=CANARY,
        stable=STABLE,
        window=WINDOW,
        judge=MannWhitneyJudge(),
    )


def test_a_503_fault_on_the_canary_fails_the_interval(
    meshsim_traffic: MeshsimProcess, prometheus_traffic: PrometheusProcess
) -> None:
    _warm(meshsim_traffic, prometheus_traffic)
    fault = {**CATALOG, "version": "v2", "error_rate": 0.1, "status": 503}
    assert meshsim_traffic.admin("POST", "traffic/faults", json=fault).ok
    wait_for_window_after(prometheus_traffic.url, time.time(), WINDOW_S)  # the window holds only faulty traffic
    result = _analyse(prometheus_traffic)
    assert result.verdict == Verdict.FAIL, result.reason
    success = result.metrics[0]
    assert success.verdict == Verdict.FAIL
    assert success.canary is not None and 0.8 < success.canary < 0.96
    assert success.stable is not None and success.stable > 0.99
    assert result.reason.startswith("request-success-rate of canary 0.")
    # the guard rail (< 0.95 with certainty) or the statistical test, both name the values
    assert "< 0.95 (guard rail)" in result.reason or "< 0.99" in result.reason, result.reason
    assert "(stable 0.99" in result.reason or "(stable 1)" in result.reason
    share = result.metrics[2]  # the custom template, rendered and asked of Prometheus
    assert share.canary is not None and 0.04 < share.canary < 0.2, share.reason
    assert share.stable is not None and share.stable < 0.01
    assert share.detail["n_canary"] >= 2  # per-step samples from query_range
    decision = decide(AnalysisPolicy(failure_limit=1), AnalysisState(), result)
    assert decision.action == Action.ROLLBACK


def test_without_a_fault_the_interval_never_fails(
    meshsim_traffic: MeshsimProcess, prometheus_traffic: PrometheusProcess
) -> None:
    raised = _warm(meshsim_traffic, prometheus_traffic)
    wait_for_window_after(prometheus_traffic.url, raised, WINDOW_S)  # the window holds only the raised rate
    result = _analyse(prometheus_traffic)
    assert result.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE), result.reason
    assert result.metrics[0].canary is not None and result.metrics[0].canary > 0.98


def test_stopped_prometheus_is_an_error_never_a_failure(
    meshsim_traffic: MeshsimProcess,
    prometheus: Callable[[Sequence[str]], PrometheusProcess],
) -> None:
    prom = prometheus([meshsim_traffic.url])
    prom.stop()
    result = _analyse(prom)
    assert result.verdict == Verdict.ERROR
    assert "metrics provider unavailable" in result.reason
    policy, state = AnalysisPolicy(failure_limit=1, no_data_limit=2), AnalysisState()
    first = decide(policy, state, result)
    second = decide(policy, first.state, result)
    assert (first.action, second.action) == (Action.WAIT, Action.PAUSE)
