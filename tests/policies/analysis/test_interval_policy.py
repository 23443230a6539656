"""One interval over a stub provider, and the run-level rule (unit tests of the logic)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from policies.analysis import (
    Action,
    AnalysisPolicy,
    AnalysisState,
    FailureLimitJudge,
    IntervalResult,
    MannWhitneyJudge,
    MetricSample,
    ProviderQueryError,
    ProviderUnavailable,
    Target,
    ThresholdJudge,
    Verdict,
    analysis_window,
    decide,
    latency_p99,
    run_interval,
    success_rate,
)
from policies.analysis.providers import buckets_sample, outcomes_sample, selector

CANARY = Target("shop", "catalog", version="v2")
STABLE = Target("shop", "catalog", version="v1")
SR, P99 = success_rate(min=0.99), latency_p99(max=500)


@dataclass
class StubProvider:
    """Answers from a table {(metric, version): MetricSample | None | Exception}."""

    answers: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def sample(self, metric, target, window):
        self.calls.append((metric.name, target.version, window))
        answer = self.answers.get((metric.name, target.version))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def series(self, metric, target, *, window, start, end, step):
        return []


def ok(successes: int, errors: int) -> MetricSample:
    return outcomes_sample({"200": successes, "503": errors})


def slow(ms: float, n: int) -> MetricSample:
    return buckets_sample({ms: n, float("inf"): n})


def run(provider, judge=None, metrics=(SR, P99), states=None) -> IntervalResult:
    return run_interval(
        provider=provider,
        metrics=list(metrics),
        canary=CANARY,
        stable=STABLE,
        window="2m",
        judge=judge or MannWhitneyJudge(),
        states=states,
    )


def test_a_failing_metric_fails_the_interval_with_values_in_the_reason() -> None:
    provider = StubProvider(
        {
            (SR.name, "v2"): ok(947, 53),
            (SR.name, "v1"): ok(9990, 10),
            (P99.name, "v2"): slow(100, 1000),
            (P99.name, "v1"): slow(100, 10000),
        }
    )
    result = run(provider)
    assert result.verdict == Verdict.FAIL
    assert result.reason.startswith("request-success-rate of canary 0.947 < 0.99 (stable 0.999)")
    assert "Mann-Whitney p" in result.reason
    sr = result.metrics[0]
    assert (sr.canary, sr.stable, sr.threshold) == (0.947, 0.999, ">= 0.99")
    assert result.metrics[1].verdict == Verdict.PASS
    assert ("request-success-rate", "v2", "2m") in provider.calls
    assert result.to_dict()["metrics"][0]["detail"]["p_value"] < 1e-6


def test_all_pass() -> None:
    provider = StubProvider(
        {
            (SR.name, "v2"): ok(999, 1),
            (SR.name, "v1"): ok(9990, 10),
            (P99.name, "v2"): slow(100, 1000),
            (P99.name, "v1"): slow(100, 10000),
        }
    )
    result = run(provider)
    assert result.verdict == Verdict.PASS and result.reason.startswith("all metrics pass")


def test_no_canary_traffic_is_no_data() -> None:
    provider = StubProvider({(SR.name, "v1"): ok(100, 0), (P99.name, "v1"): slow(10, 100)})
    result = run(provider)
    assert result.verdict == Verdict.NO_DATA
    assert "no data for canary shop/catalog v2 in the last 2m" in result.reason


def test_provider_outage_and_bad_query_are_errors() -> None:
    down = ProviderUnavailable("cannot reach Prometheus at http://p:9090")
    result = run(StubProvider({(SR.name, "v2"): down, (P99.name, "v2"): down}))
    assert result.verdict == Verdict.ERROR
    assert "metrics provider unavailable: cannot reach Prometheus" in result.reason
    bad = run(StubProvider({(SR.name, "v2"): ProviderQueryError("parse error")}), metrics=[SR])
    assert bad.verdict == Verdict.ERROR and "query error" in bad.reason


def test_an_observed_failure_outranks_an_error_of_another_metric() -> None:
    provider = StubProvider(
        {
            (SR.name, "v2"): ok(500, 500),
            (SR.name, "v1"): ok(1000, 0),
            (P99.name, "v2"): ProviderUnavailable("timeout"),
        }
    )
    assert run(provider).verdict == Verdict.FAIL


def test_judge_state_is_carried_between_intervals() -> None:
    provider = StubProvider({(SR.name, "v2"): ok(90, 10), (SR.name, "v1"): ok(100, 0)})
    judge = FailureLimitJudge(failure_limit=1)
    first = run(provider, judge=judge, metrics=[SR])
    assert first.verdict == Verdict.INCONCLUSIVE and first.states == {SR.name: {"failures": 1}}
    second = run(provider, judge=judge, metrics=[SR], states=first.states)
    assert second.verdict == Verdict.FAIL


def test_threshold_judge_over_an_interval() -> None:
    provider = StubProvider({(P99.name, "v2"): slow(1000, 50), (P99.name, "v1"): slow(100, 50)})
    result = run(provider, judge=ThresholdJudge(), metrics=[P99])
    assert result.verdict == Verdict.FAIL and "request-duration-p99 of canary" in result.reason
    assert "ms > 500" in result.reason


def test_provider_helpers() -> None:
    assert outcomes_sample({}) is None and outcomes_sample({"200": 0}) is None
    sample = outcomes_sample({"200": 95, "404": 3, "503": 1, "0": 1})
    assert sample.value == pytest.approx(0.99) and sample.requests == 100
    latency = buckets_sample({10.0: 90, 100.0: 100, float("inf"): 100})
    assert latency.samples.counts == (90, 10) and latency.value == pytest.approx(91.0)
    assert buckets_sample({10.0: 0, float("inf"): 0}) is None
    evil = selector(Target('a"}', "b", canary=True))
    assert 'destination_service_namespace="a\\"}"' in evil and 'destination_canary="true"' in evil


# policy ----------------------------------------------------------------------------------------


def result(verdict: Verdict) -> IntervalResult:
    return IntervalResult(verdict, f"reason {verdict}")


def walk(policy: AnalysisPolicy, verdicts: list[Verdict]) -> list[Action]:
    state, actions = AnalysisState(), []
    for verdict in verdicts:
        decision = decide(policy, state, result(verdict))
        state = AnalysisState.from_dict(decision.state.to_dict())  # as stored with the rollout
        actions.append(decision.action)
    return actions


P, F, I, N, E = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.NO_DATA, Verdict.ERROR
W, ADV, RB, PAUSE = Action.WAIT, Action.ADVANCE, Action.ROLLBACK, Action.PAUSE


def test_failure_limit_counts_failed_intervals() -> None:
    policy = AnalysisPolicy(failure_limit=3, required_successes=5)
    assert walk(policy, [F, P, F, P, F]) == [W, W, W, W, RB]
    decision = decide(AnalysisPolicy(failure_limit=1), AnalysisState(), result(F))
    assert decision.action == RB
    assert decision.reason == "roll back (1 of 1 failed intervals): reason fail"


def test_consecutive_successes_are_required_to_advance() -> None:
    policy = AnalysisPolicy(required_successes=3)
    assert walk(policy, [P, P, I, P, P, P]) == [W, W, W, W, W, ADV]
    assert walk(policy, [P, P, N, P, P, P]) == [W, W, W, W, W, ADV]


def test_no_data_waits_then_pauses_for_a_person() -> None:
    policy = AnalysisPolicy(no_data_limit=3)
    assert walk(policy, [N, N, P, N, N, N]) == [W, W, ADV, W, W, PAUSE]


def test_provider_outage_never_rolls_back_nor_passes() -> None:
    policy = AnalysisPolicy(failure_limit=1, required_successes=1, no_data_limit=4)
    actions = walk(policy, [E] * 10)
    assert RB not in actions and ADV not in actions
    assert actions[:4] == [W, W, W, PAUSE]
    decision = decide(policy, AnalysisState(no_data_in_row=3), result(E))
    assert decision.reason.startswith("paused for a person: metrics provider error (4 of 4 in a row)")


def test_inconclusive_forever_pauses() -> None:
    assert walk(AnalysisPolicy(inconclusive_limit=2), [I, I]) == [W, PAUSE]


def test_policy_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        AnalysisPolicy(failure_limit=0)


def test_analysis_window_spans_the_judge_window_but_not_before_the_start() -> None:
    judge = MannWhitneyJudge(window_intervals=10)
    assert analysis_window(judge, interval_s=30, elapsed_s=95) == "95s"
    assert analysis_window(judge, interval_s=30, elapsed_s=3600) == "300s"
    # never before the phase began, even at its first look: a new attempt sees only its own samples
    assert analysis_window(judge, interval_s=30, elapsed_s=20) == "20s"
    assert analysis_window(judge, interval_s=30, elapsed_s=3600, requested_s=120) == "120s"
    assert analysis_window(ThresholdJudge(), interval_s=60, elapsed_s=600) == "60s"
