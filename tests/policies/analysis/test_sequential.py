"""The default judge, one behaviour per test (policies.analysis.sequential)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from integrations.meshsim.traffic import DURATION_BUCKETS_MS
from policies.analysis import (
    Action,
    AnalysisPolicy,
    AnalysisState,
    Distribution,
    Outcome,
    ThresholdJudge,
    decide,
    summarize,
)
from policies.analysis.interval import MetricResult, Verdict
from policies.analysis.judges import Step, observe
from policies.analysis.metrics import latency_p99, success_rate
from policies.analysis.sequential import (
    SequentialJudge,
    dispersion,
    mantel_haenszel,
    msprt,
    stable_burstiness,
)
from policies.rollout import analysis as an
from policies.rollout.analysis import explain
from policies.rollout.selectors import explanation

SR, P99 = success_rate(), latency_p99()
BOUNDS = np.array([*DURATION_BUCKETS_MS, math.inf])


def outcomes(rng: np.random.Generator, n: float, p: float) -> Distribution:
    count = int(rng.poisson(n))
    errors = int(rng.binomial(count, min(p, 1.0)))
    return Distribution.outcomes(count - errors, errors)


def latencies(rng: np.random.Generator, n: float, median: float, sigma: float) -> Distribution:
    cdf = norm.cdf((np.log(BOUNDS[:-1]) - math.log(median)) / sigma)
    probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    counts = rng.multinomial(int(rng.poisson(n)), probs)
    keep = counts > 0
    return Distribution(tuple(BOUNDS[keep].tolist()), tuple(counts[keep].astype(float).tolist()))


def looks(judge, metric, pairs, *, phase="w10", last=False, state=None):
    """Judge each (canary, stable) interval in turn, carrying the state; every verdict."""
    verdicts = []
    for canary, stable in pairs:
        verdict = judge.judge(
            metric,
            observe(metric, canary, stable),
            metrics_count=2,
            state=state,
            step=Step(phase=phase, last=last, seconds=60),
        )
        state = verdict.state
        verdicts.append(verdict)
    return verdicts


def test_evidence_accumulates_over_the_step() -> None:
    """x2 errors on 1 %: one interval is not enough, the carried evidence catches it."""
    rng = np.random.default_rng(5)
    pairs = [(outcomes(rng, 500, 0.02), outcomes(rng, 4500, 0.01)) for _ in range(12)]
    verdicts = looks(SequentialJudge(), SR, pairs)
    assert verdicts[0].outcome != Outcome.FAIL
    assert Outcome.FAIL in [v.outcome for v in verdicts]
    assert len(verdicts[-1].state["strata"]) == 12


def test_repeated_looks_at_good_canaries_rarely_roll_back() -> None:
    """200 good canaries, 10 looks each: the always-valid p-value keeps false rollbacks near alpha."""
    rng = np.random.default_rng(11)
    judge, failed = SequentialJudge(), 0
    for _ in range(200):
        pairs = [(outcomes(rng, 300, 0.01), outcomes(rng, 2700, 0.01)) for _ in range(10)]
        failed += any(v.outcome == Outcome.FAIL for v in looks(judge, SR, pairs))
    assert failed <= 4  # alpha 0.01 per attempt, a little slack for the normal approximation


def test_msprt_p_value_falls_with_evidence_and_never_below_zero_effect() -> None:
    assert msprt(0.0, 0.01, theta0=0.0, tau=0.4) == 1.0
    assert msprt(0.7, 0.1, theta0=0.0, tau=0.4) > msprt(0.7, 0.01, theta0=0.0, tau=0.4)


def test_the_tail_is_compared_a_p99_only_regression_fails() -> None:
    """Median unchanged, p99 +50 % (a wider distribution): caught by the share above stable's p99."""
    rng = np.random.default_rng(3)
    wider = 0.5 + math.log(1.5) / norm.ppf(0.99)
    pairs = [(latencies(rng, 2000, 50, wider), latencies(rng, 8000, 50, 0.5)) for _ in range(6)]
    verdicts = looks(SequentialJudge(), P99, pairs)
    # a consistent tail, interval after interval (one or two alone may be a spike)
    assert verdicts[-1].outcome == Outcome.FAIL, verdicts[-1].reason
    assert "p99" in verdicts[-1].reason
    same = [(latencies(rng, 2000, 50, 0.5), latencies(rng, 8000, 50, 0.5)) for _ in range(6)]
    assert [v.outcome for v in looks(SequentialJudge(), P99, same)][-1] == Outcome.PASS


def spiked(rng: np.random.Generator, d: Distribution, share: float = 0.05, buckets: int = 3) -> Distribution:
    """``d`` with ``share`` of its requests ``buckets`` buckets slower (a GC pause, a cold cache)."""
    counts = np.zeros(len(BOUNDS))
    for bound, n in zip(d.values, d.counts, strict=True):
        counts[int(np.searchsorted(BOUNDS, bound))] += n
    slow = rng.binomial(counts.astype(int), share)
    counts = counts - slow
    for i in np.nonzero(slow)[0]:
        counts[min(i + buckets, len(counts) - 1)] += slow[i]
    keep = counts > 0
    return Distribution(tuple(BOUNDS[keep].tolist()), tuple(counts[keep].tolist()))


def test_latency_spikes_on_the_canary_two_intervals_in_a_row_are_not_a_tail_regression() -> None:
    """The slowest 1 % swings beyond its counts (a spike hits one pod, not the other version): two
    canary intervals with 5 % of requests two buckets slower, the stable steady, at a 5 % step,
    roll nothing back (20 draws, the one-interval rule off); without the tail's floor some would."""
    default, strict = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        pairs = [(spiked(rng, latencies(rng, 850, 50, 0.8), 0.05, 2), latencies(rng, 16000, 50, 0.8))
                 for _ in range(2)]  # fmt: skip
        # the one-interval rule off in both: the tail's variance alone decides
        default.append(looks(SequentialJudge(beyond_one_interval=0), P99, pairs, phase="w5")[-1])
        bare = SequentialJudge(tail_heterogeneity=0.0, beyond_one_interval=0)
        strict.append(looks(bare, P99, pairs, phase="w5")[-1].outcome)
    assert not [v.reason for v in default if v.outcome == Outcome.FAIL]
    assert all(next(t for t in v.detail["tests"] if t["test"] == "tail")["ratio"] > 1.5 for v in default)
    assert strict.count(Outcome.FAIL) >= 3


def test_one_wild_interval_on_one_version_is_not_a_regression_a_second_one_is() -> None:
    """The canary's whole latency doubles for one interval (a slow node, the stable untouched): the
    step waits and says why; the same again in the next interval fails it."""
    rng = np.random.default_rng(9)
    calm = [(latencies(rng, 1500, 50, 0.6), latencies(rng, 13500, 50, 0.6)) for _ in range(3)]
    wild = (latencies(rng, 1500, 100, 0.6), latencies(rng, 13500, 50, 0.6))
    verdicts = looks(SequentialJudge(), P99, [wild])
    assert verdicts[0].outcome == Outcome.INCONCLUSIVE, verdicts[0].reason
    assert verdicts[0].detail["one_interval"] is True
    assert "one interval alone is not a regression" in verdicts[0].reason
    assert "one interval alone" in explanation(explain(verdicts[0].detail))
    # with 4 judged intervals the rule no longer applies: the verdict is the variance's alone
    later = looks(SequentialJudge(), P99, [*calm, wild])[-1]
    bare = looks(SequentialJudge(beyond_one_interval=0), P99, [*calm, wild])[-1]
    assert not later.detail.get("one_interval")
    assert (later.outcome, later.reason) == (bare.outcome, bare.reason)
    # a regression that shows twice fails (by the second judged interval)
    twice = looks(SequentialJudge(), P99, [wild, (latencies(rng, 1500, 100, 0.6), latencies(rng, 13500, 50, 0.6))])
    assert twice[-1].outcome == Outcome.FAIL, twice[-1].reason
    # without the rule the single interval fails at once
    assert looks(SequentialJudge(beyond_one_interval=0), P99, [wild])[0].outcome == Outcome.FAIL


def test_the_tail_prior_reads_every_stable_spike_the_error_prior_looks_past_them() -> None:
    """A stable whose slowest share triples in a third of its intervals: read robustly (for errors,
    where an incident of one or two intervals hits both versions) it looks steady; read with every
    interval (for the tail) it shows its swing."""
    rows = [(0.0, 0.0, 10000.0, 300.0 if i % 3 == 0 else 100.0) for i in range(9)]
    assert stable_burstiness(rows) < 0.05
    assert stable_burstiness(rows, robust=False) > 0.2


def test_a_shared_incident_pauses_after_ten_intervals_by_default() -> None:
    """The engine's run-level rule without a configured limit: nine intervals with both versions bad
    hold the step, the tenth asks a person."""
    outcome = an.Outcome(an.INCONCLUSIVE, "both versions are bad", both_bad=True)
    state: dict = {}
    actions = []
    for _ in range(10):
        action, _, state = an.decide({}, state, outcome)
        actions.append(action)
    assert actions == ["wait"] * 9 + ["pause"]


def test_bursty_errors_are_overdispersed_not_blamed_on_the_canary() -> None:
    rng = np.random.default_rng(8)
    binomial = [(1000, rng.binomial(1000, 0.01), 9000, rng.binomial(9000, 0.01)) for _ in range(10)]
    bursty = [
        (1000, rng.binomial(1000, 0.01 * g1), 9000, rng.binomial(9000, 0.01 * g2))
        for g1, g2 in rng.gamma(1.5, 1 / 1.5, size=(10, 2))
    ]
    theta = mantel_haenszel(binomial)[0]
    assert dispersion(binomial, theta)[0] < 2.0
    assert dispersion(bursty, mantel_haenszel(bursty)[0])[0] > 3.0


def test_a_shared_incident_is_not_the_canary_fault() -> None:
    """Both versions at 10 % errors in the same interval: the rate ratio stays near 1."""
    rng = np.random.default_rng(2)
    pairs = [(outcomes(rng, 1000, 0.01), outcomes(rng, 9000, 0.01)) for _ in range(3)]
    pairs += [(outcomes(rng, 1000, 0.04), outcomes(rng, 9000, 0.04))]
    assert all(v.outcome != Outcome.FAIL for v in looks(SequentialJudge(), SR, pairs))


def test_both_versions_bad_pauses_and_says_so() -> None:
    rng = np.random.default_rng(4)
    pairs = [(outcomes(rng, 1000, 0.3), outcomes(rng, 9000, 0.3))]
    verdict = looks(SequentialJudge(), SR, pairs)[-1]
    assert verdict.outcome == Outcome.INCONCLUSIVE and verdict.detail["both_bad"]
    assert "both versions are bad" in verdict.reason
    metric = MetricResult(SR.name, Verdict.INCONCLUSIVE, verdict.reason, detail=verdict.detail)
    result, state, policy = summarize([metric]), AnalysisState(), AnalysisPolicy(both_bad_limit=2)
    first = decide(policy, state, result)
    assert first.action == Action.WAIT
    second = decide(policy, first.state, result)
    assert second.action == Action.PAUSE and "not blamed" in second.reason


def test_a_stable_as_bad_excuses_the_canary_though_fewer_requests_leave_it_short_of_certain() -> None:
    """Both at about 10 % errors against a 5 % guard, the stable on far fewer requests: the
    canary's breach is certain, the stable's only likely. The canary is not blamed."""
    canary, stable = Distribution.outcomes(3000 - 285, 285), Distribution.outcomes(100 - 10, 10)
    verdict = looks(SequentialJudge(), SR, [(canary, stable)])[-1]
    assert verdict.outcome == Outcome.INCONCLUSIVE and verdict.detail["both_bad"], verdict.reason


def test_a_failing_canary_in_a_shared_incident_is_still_rolled_back() -> None:
    """Stable at 10 % errors (an incident), the canary answering 90 % errors: both breach the
    guard, and the canary is certainly worse than the stable in the same intervals."""
    rng = np.random.default_rng(8)
    pairs = [(outcomes(rng, 1000, 0.9), outcomes(rng, 9000, 0.1)) for _ in range(2)]
    first, verdict = looks(SequentialJudge(), SR, pairs)
    # at once: the rule that one interval alone fails no comparison yields to a certain breach
    assert first.outcome == Outcome.FAIL, first.reason
    assert verdict.outcome == Outcome.FAIL, verdict.reason
    assert "both versions breach the guard rail" in verdict.reason and "worse than stable" in verdict.reason


def test_the_guard_rail_fails_a_canary_at_once_when_stable_is_fine() -> None:
    rng = np.random.default_rng(6)
    verdict = looks(SequentialJudge(), SR, [(outcomes(rng, 400, 0.2), outcomes(rng, 3600, 0.01))])[-1]
    assert verdict.outcome == Outcome.FAIL and "guard rail" in verdict.reason


def test_the_warm_up_is_not_judged_only_the_stable_side_is_kept() -> None:
    rng = np.random.default_rng(7)
    judge = SequentialJudge()
    spike = observe(SR, outcomes(rng, 500, 0.5), outcomes(rng, 4500, 0.01))
    verdict = judge.judge(SR, spike, state={}, step=Step(phase="w5", warmup=True))
    assert verdict.outcome == Outcome.INCONCLUSIVE and "warm-up" in verdict.reason
    (kept,) = verdict.state["strata"]
    assert kept["warmup"] and kept["nc"] == 0 and kept["ec"] == 0 and kept["ns"] > 4000
    after = observe(SR, outcomes(rng, 500, 0.01), outcomes(rng, 4500, 0.01))
    judged = judge.judge(SR, after, state=verdict.state, step=Step(phase="w5", seconds=60))
    assert judged.outcome == Outcome.PASS, judged.reason  # the spike is not held against the canary
    assert judged.detail["n_canary"] == sum(after.canary.counts)


def test_a_bursty_stable_seen_in_the_warm_up_keeps_one_wild_interval_from_rolling_back() -> None:
    """The stable's burstiness shows across the warm-up and the first judged interval: a canary
    interval x18 the stable's (gamma-distributed rates on both sides) is not certain yet (the rule
    that one interval alone fails nothing switched off, to see the variance at work)."""
    judge = SequentialJudge(beyond_one_interval=0)
    warm = judge.judge(
        SR, observe(SR, Distribution.outcomes(1300, 42), Distribution.outcomes(24677, 209)),
        state={}, step=Step(phase="w5", warmup=True, seconds=60),
    )  # fmt: skip
    wild = observe(SR, Distribution.outcomes(1244, 67), Distribution.outcomes(25010, 71))
    verdict = judge.judge(SR, wild, metrics_count=2, state=warm.state, step=Step(phase="w5", seconds=60))
    assert verdict.outcome != Outcome.FAIL, verdict.reason
    assert verdict.detail["tests"][0]["dispersion"] > 5  # the variance allows for the bursts
    # without the warm-up's stable side the same interval is judged binomial, and fails
    alone = judge.judge(SR, wild, metrics_count=2, state={}, step=Step(phase="w5", seconds=60))
    assert alone.outcome == Outcome.FAIL


def test_low_traffic_waits_and_says_how_long_and_an_outright_failure_still_fails() -> None:
    judge = SequentialJudge()
    few = observe(SR, Distribution.outcomes(6, 0), Distribution.outcomes(114, 1))
    verdict = judge.judge(SR, few, state={}, step=Step(phase="w5", seconds=60))
    assert verdict.outcome == Outcome.INCONCLUSIVE
    assert "not enough traffic yet" in verdict.reason and "about 16 more minutes" in verdict.reason
    broken = observe(SR, Distribution.outcomes(0, 6), Distribution.outcomes(113, 1))
    assert judge.judge(SR, broken, state={}, step=Step(phase="w5", seconds=60)).outcome == Outcome.FAIL


def test_no_data_never_passes_and_never_rolls_back() -> None:
    result = summarize([MetricResult(SR.name, Verdict.NO_DATA, "no data")])
    state = AnalysisState()
    for _ in range(5):
        decision = decide(AnalysisPolicy(no_data_limit=5), state, result)
        assert decision.action in (Action.WAIT, Action.PAUSE)
        state = decision.state
    assert decision.action == Action.PAUSE


def test_the_last_step_needs_no_stable_traffic_and_compares_with_the_baseline() -> None:
    rng = np.random.default_rng(9)
    judge, metric = SequentialJudge(), success_rate(guard_min=None)  # the comparison alone
    before = [(outcomes(rng, 2000, 0.01), outcomes(rng, 2000, 0.01)) for _ in range(4)]
    state = looks(judge, metric, before, phase="w50")[-1].state
    empty = Distribution()
    good = looks(judge, metric, [(outcomes(rng, 4000, 0.01), empty)], phase="w100", last=True, state=state)[-1]
    assert good.outcome == Outcome.PASS, good.reason
    bad = looks(judge, metric, [(outcomes(rng, 4000, 0.1), empty)] * 2, phase="w100", last=True, state=state)
    assert bad[0].outcome == Outcome.INCONCLUSIVE  # one interval alone could be an incident of the service
    assert bad[1].outcome == Outcome.FAIL and "baseline" in bad[1].reason
    blip = [(outcomes(rng, 4000, 0.1), empty), (outcomes(rng, 4000, 0.01), empty)]
    assert looks(judge, metric, blip, phase="w100", last=True, state=state)[-1].outcome == Outcome.PASS


def test_every_verdict_explains_itself() -> None:
    rng = np.random.default_rng(10)
    verdict = looks(SequentialJudge(), SR, [(outcomes(rng, 1000, 0.01), outcomes(rng, 9000, 0.01))])[-1]
    detail = verdict.detail
    assert detail["method"].startswith("mSPRT") and detail["n_canary"] > 0 and detail["n_stable"] > 0
    test = detail["tests"][0]
    assert test["ratio_low"] <= test["ratio"] <= test["ratio_high"]
    text = explanation(explain(detail))
    assert "passed: no regression" in text and "samples canary" in text and "errors vs stable: ×" in text


def test_the_threshold_judge_does_not_decide_on_one_request() -> None:
    one_503 = observe(SR, Distribution.outcomes(0, 1), Distribution.outcomes(100, 0))
    assert ThresholdJudge().judge(SR, one_503).outcome == Outcome.INCONCLUSIVE


def _before_last(judge, pairs):
    verdicts, state = [], None
    for canary, stable in pairs:
        verdict = judge.judge(
            SR, observe(SR, canary, stable), metrics_count=2, state=state,
            step=Step(phase="w50", before_last=True, seconds=60),
        )  # fmt: skip
        state = verdict.state
        verdicts.append(verdict)
        if verdict.outcome != Outcome.INCONCLUSIVE:
            break
    return verdicts


def test_the_step_before_the_last_rules_out_a_small_regression_when_the_traffic_can_show_it() -> None:
    rng = np.random.default_rng(11)
    judge = SequentialJudge()
    good = _before_last(judge, [(outcomes(rng, 6000, 0.01), outcomes(rng, 6000, 0.01)) for _ in range(30)])
    assert "x1.3 regression is not ruled out yet" in good[0].reason
    assert good[-1].outcome == Outcome.PASS and 1 < len(good) <= judge.power_wait_intervals

    # +30 % errors on a 1 % baseline: caught while the step waits, never passed
    bad = _before_last(judge, [(outcomes(rng, 6000, 0.013), outcomes(rng, 6000, 0.01)) for _ in range(30)])
    assert bad[-1].outcome == Outcome.FAIL, bad[-1].reason

    # at a tenth of that traffic twenty intervals could not rule it out: the step does not wait for it
    thin = _before_last(judge, [(outcomes(rng, 300, 0.01), outcomes(rng, 300, 0.01)) for _ in range(30)])
    assert len(thin) == 1 and thin[0].outcome == Outcome.PASS, thin[0].reason
