"""The judges on synthetic observations (seeded draws of the benchmark's model)."""

from __future__ import annotations

import numpy as np
import pytest

from policies.analysis.judges import (
    Distribution,
    FailureLimitJudge,
    MannWhitneyJudge,
    Outcome,
    ThresholdJudge,
    observe,
)
from policies.analysis.metrics import Direction, custom, latency_p99, success_rate

SR = success_rate(min=0.99, guard_min=0.95)
P99 = latency_p99(max=500)
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, float("inf"))


def outcomes(rng: np.random.Generator, n: int, error_rate: float) -> Distribution:
    errors = int(rng.binomial(n, error_rate))
    return Distribution.outcomes(n - errors, errors)


def latencies(rng: np.random.Generator, n: int, median: float, sigma: float = 0.8) -> Distribution:
    drawn = rng.lognormal(np.log(median), sigma, n)
    index = np.searchsorted(np.array(BUCKETS), drawn)
    counts = np.bincount(index, minlength=len(BUCKETS))
    keep = counts > 0
    return Distribution(tuple(np.array(BUCKETS)[keep].tolist()), tuple(counts[keep].astype(float).tolist()))


# ThresholdJudge / FailureLimitJudge ------------------------------------------------------------


def test_threshold_judge_checks_the_range_in_each_direction() -> None:
    judge = ThresholdJudge()
    stable = Distribution.outcomes(999, 1)
    bad = judge.judge(SR, observe(SR, Distribution.outcomes(947, 53), stable))
    assert bad.outcome == Outcome.FAIL
    assert bad.reason == "request-success-rate of canary 0.947 < 0.99 (stable 0.999)"
    good = judge.judge(SR, observe(SR, Distribution.outcomes(995, 5), Distribution.outcomes(1, 0)))
    assert good.outcome == Outcome.PASS
    slow = judge.judge(P99, observe(P99, Distribution((1000.0,), (20.0,)), Distribution()))
    assert slow.outcome == Outcome.FAIL and "> 500" in slow.reason
    empty = judge.judge(SR, observe(SR, Distribution(), Distribution()))
    assert empty.outcome == Outcome.INCONCLUSIVE


def test_failure_limit_judge_carries_failures_across_intervals() -> None:
    judge, state = FailureLimitJudge(failure_limit=2), {}
    bad = observe(SR, Distribution.outcomes(90, 10), Distribution.outcomes(100, 0))
    good = observe(SR, Distribution.outcomes(100, 0), Distribution.outcomes(100, 0))
    outcomes_seen = []
    for obs in (bad, good, bad, bad):
        verdict = judge.judge(SR, obs, state=state)
        state = verdict.state
        outcomes_seen.append(verdict.outcome)
    assert outcomes_seen == [Outcome.INCONCLUSIVE, Outcome.PASS, Outcome.INCONCLUSIVE, Outcome.FAIL]
    assert state == {"failures": 3}
    assert "3 failed measurements > limit 2" in verdict.reason


# MannWhitneyJudge ------------------------------------------------------------------------------


def test_a_doubled_error_rate_fails_with_a_readable_reason() -> None:
    rng = np.random.default_rng(1)
    obs = observe(SR, outcomes(rng, 20_000, 0.02), outcomes(rng, 60_000, 0.01))
    verdict = MannWhitneyJudge().judge(SR, obs, metrics_count=2)
    assert verdict.outcome == Outcome.FAIL, verdict.reason
    assert verdict.reason.startswith("request-success-rate of canary 0.98")
    assert "< 0.99 (stable 0.99" in verdict.reason and "Mann-Whitney p" in verdict.reason
    assert verdict.detail["p_value"] < 0.0005 and verdict.detail["effect"] > 0.5
    assert {"u", "rank_biserial", "alpha"} <= set(verdict.detail)


def test_a_slower_canary_fails_on_latency() -> None:
    rng = np.random.default_rng(2)
    obs = observe(P99, latencies(rng, 3000, 15), latencies(rng, 9000, 10))
    verdict = MannWhitneyJudge().judge(P99, obs, metrics_count=2)
    assert verdict.outcome == Outcome.FAIL, verdict.reason
    assert "canary > stable" in verdict.reason and verdict.detail["effect"] >= 0.1


def test_noise_passes() -> None:
    rng = np.random.default_rng(3)
    judge = MannWhitneyJudge()
    for _ in range(20):
        sr_obs = observe(SR, outcomes(rng, 3000, 0.01), outcomes(rng, 9000, 0.01))
        lat_obs = observe(P99, latencies(rng, 3000, 10), latencies(rng, 9000, 10))
        sr = judge.judge(SR, sr_obs, metrics_count=2)
        lat = judge.judge(P99, lat_obs, metrics_count=2)
        assert sr.outcome == Outcome.PASS and lat.outcome == Outcome.PASS, (sr.reason, lat.reason)


def test_a_tiny_but_significant_difference_passes_on_the_effect_floor() -> None:
    """1.00 % vs 1.05 % errors over millions of requests: significant, not meaningful."""
    obs = observe(SR, Distribution.outcomes(9_895_000, 105_000), Distribution.outcomes(9_900_000, 100_000))
    verdict = MannWhitneyJudge().judge(SR, obs)
    assert verdict.detail["p_value"] < 0.001
    assert verdict.outcome == Outcome.PASS and "effect below floor" in verdict.reason


def test_low_traffic_is_inconclusive_not_fail() -> None:
    obs = observe(SR, Distribution.outcomes(28, 2), Distribution.outcomes(2000, 2))
    verdict = MannWhitneyJudge().judge(SR, obs)
    assert verdict.outcome == Outcome.INCONCLUSIVE and "too little canary traffic" in verdict.reason
    few_stable = observe(SR, Distribution.outcomes(500, 0), Distribution.outcomes(10, 0))
    assert MannWhitneyJudge().judge(SR, few_stable).outcome == Outcome.INCONCLUSIVE


def test_a_catastrophe_fails_on_the_guard_rail_at_once() -> None:
    """40 requests, half of them errors: too few for the statistics, certain for the guard."""
    obs = observe(SR, Distribution.outcomes(20, 20), Distribution.outcomes(20, 0))
    verdict = MannWhitneyJudge().judge(SR, obs)
    assert verdict.outcome == Outcome.FAIL and "(guard rail)" in verdict.reason
    # 2 errors in 30 is below the floor by chance, not with certainty: no guard failure
    unsure = observe(SR, Distribution.outcomes(28, 2), Distribution.outcomes(2000, 2))
    assert MannWhitneyJudge().judge(SR, unsure).outcome == Outcome.INCONCLUSIVE


def test_direction_follows_the_metric() -> None:
    """A canary that is better than stable never fails, whichever way is better."""
    rng = np.random.default_rng(4)
    judge = MannWhitneyJudge()
    faster = observe(P99, latencies(rng, 3000, 5), latencies(rng, 3000, 10))
    assert judge.judge(P99, faster).outcome == Outcome.PASS
    fewer_errors = observe(SR, outcomes(rng, 20000, 0.005), outcomes(rng, 20000, 0.02))
    assert judge.judge(SR, fewer_errors).outcome == Outcome.PASS
    promql = 'sum(rate(x{a="{service}"}[{interval}]))'
    throughput = custom("throughput", promql, direction=Direction.HIGHER_IS_BETTER)
    low = Distribution.of(rng.normal(80, 5, 60))
    high = Distribution.of(rng.normal(100, 5, 60))
    assert judge.judge(throughput, observe(throughput, low, high)).outcome == Outcome.FAIL
    assert judge.judge(throughput, observe(throughput, high, low)).outcome == Outcome.PASS
    errors = custom("errors", promql, direction=Direction.LOWER_IS_BETTER)
    assert judge.judge(errors, observe(errors, high, low)).outcome == Outcome.FAIL
    assert judge.judge(errors, observe(errors, low, high)).outcome == Outcome.PASS


def test_bonferroni_divides_alpha_by_the_number_of_metrics() -> None:
    """A difference significant at alpha but not at alpha / 4."""
    judge = MannWhitneyJudge(alpha=0.01)
    obs = observe(SR, Distribution.outcomes(4943, 57), Distribution.outcomes(19_850, 150))
    alone = judge.judge(SR, obs, metrics_count=1)
    p = alone.detail["p_value"]
    assert 0.0025 < p < 0.01, p
    assert alone.outcome == Outcome.FAIL and alone.detail["alpha"] == pytest.approx(0.01)
    four = judge.judge(SR, obs, metrics_count=4)
    assert four.outcome == Outcome.PASS and four.detail["alpha"] == pytest.approx(0.0025)
    assert "not significant" in four.reason


def test_distribution_helpers() -> None:
    merged = Distribution.merge([Distribution.outcomes(9, 1), Distribution.outcomes(90, 0)])
    assert merged.total == 100 and merged.mean() == pytest.approx(0.99)
    median = Distribution((10.0, 100.0, float("inf")), (98, 1, 1)).quantile(0.5)
    assert median == pytest.approx(5.10204, rel=1e-3)
    assert Distribution().mean() is None and Distribution().quantile(0.99) is None
    assert list(Distribution((1.0, float("inf")), (2, 1)).expand()) == [1.0, 1.0, 2.0]
