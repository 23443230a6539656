"""Judges: canary vs stable observations of one metric -> pass / fail / inconclusive.

All judges share one call: ``judge(metric, observation, *, metrics_count=1, state=None)``.
``state`` is a small JSON-able dict a judge carries from one interval to the next (the
caller stores ``verdict.state`` and passes it back: ``FailureLimitJudge`` counts failures in
it, ``sequential.SequentialJudge``, the default, keeps the attempt's evidence in it);
``step`` (``Step``) says which phase the look belongs to, whether it is the warm-up after a
weight change and whether it is the last step. Every verdict's ``detail`` names its
``method``.

- ``ThresholdJudge`` (Flagger-style): the canary's aggregate outside the metric's threshold
  range fails the interval.
- ``FailureLimitJudge`` (Argo Rollouts-style): the same measurement, but the verdict is
  ``fail`` only once more than ``failure_limit`` measurements have failed.
- ``MannWhitneyJudge`` (Kayenta-style): a one-sided Mann-Whitney U test of canary vs
  stable samples at ``alpha / metrics_count`` (Bonferroni) AND an effect size above a
  floor (success rate: the error ratio up by ``effect_floor``, e.g. 25 %; other metrics: a
  rank-biserial correlation of ``rank_effect_floor``, e.g. 0.1); a statistically certain
  breach of the guard rail fails at once;
  too few canary or stable requests is ``inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from scipy.stats import binomtest, fisher_exact, mannwhitneyu

from integrations.prometheus.fallback import bucket_quantile
from policies.analysis.metrics import Direction, MetricDefinition, MetricKind, fmt


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Distribution:
    """Samples of a metric as (value, count) pairs: per-request outcomes (1.0 ok / 0.0 error),
    per-request latencies at histogram bucket upper bounds, or per-step values (count 1)."""

    values: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        values = tuple(float(v) for v in values if not math.isnan(v))
        return cls(values, (1.0,) * len(values))

    @classmethod
    def outcomes(cls, ok: float, errors: float) -> Distribution:
        return cls((1.0, 0.0), (float(ok), float(errors)))

    @classmethod
    def merge(cls, parts: Iterable[Distribution]) -> Distribution:
        merged: dict[float, float] = {}
        for part in parts:
            for value, count in zip(part.values, part.counts, strict=True):
                merged[value] = merged.get(value, 0.0) + count
        keys = tuple(sorted(merged))
        return cls(keys, tuple(merged[k] for k in keys))

    @property
    def total(self) -> float:
        return float(sum(self.counts))

    def mean(self) -> float | None:
        total = self.total
        if total <= 0:
            return None
        return sum(v * c for v, c in zip(self.values, self.counts, strict=True)) / total

    def quantile(self, q: float) -> float | None:
        """Prometheus' ``histogram_quantile`` when values are bucket upper bounds."""
        if self.total <= 0:
            return None
        running, cumulative = 0.0, []
        for value, count in sorted(zip(self.values, self.counts, strict=True)):
            running += count
            cumulative.append((value, running))
        if not math.isinf(cumulative[-1][0]):
            cumulative.append((math.inf, running))
        if len(cumulative) < 2:
            return None
        value = bucket_quantile(q, cumulative)
        return None if math.isnan(value) else value

    def expand(self) -> np.ndarray:
        finite = [v for v in self.values if math.isfinite(v)]
        cap = (max(finite) * 2 if finite else 1.0) or 1.0
        values = np.array([v if math.isfinite(v) else cap for v in self.values], dtype=float)
        return np.repeat(values, np.rint(np.array(self.counts, dtype=float)).astype(int))


@dataclass(frozen=True)
class Observation:
    """One metric over the judged window: canary and stable samples and aggregates.

    ``*_value`` is the metric as a person reads it (success rate, p99 ms); ``*_requests``
    how many requests stand behind it (for step samples of a custom query: the steps).
    """

    canary: Distribution
    stable: Distribution
    canary_value: float | None
    stable_value: float | None

    @property
    def canary_requests(self) -> float:
        return self.canary.total

    @property
    def stable_requests(self) -> float:
        return self.stable.total


def aggregate(metric: MetricDefinition, samples: Distribution) -> float | None:
    """The metric's value over ``samples`` (success share, bucket p99, or step mean)."""
    if metric.kind == MetricKind.LATENCY_P99:
        return samples.quantile(0.99)
    return samples.mean()


def observe(metric: MetricDefinition, canary: Distribution, stable: Distribution) -> Observation:
    return Observation(canary, stable, aggregate(metric, canary), aggregate(metric, stable))


@dataclass(frozen=True)
class Step:
    """Where the look happens: the phase (step) it belongs to, whether it is in the warm-up
    after a weight change (not judged), whether it is the last step (the stable has no
    traffic left), when it was measured and how many seconds it spans."""

    phase: str = ""
    warmup: bool = False
    last: bool = False
    at: float = 0.0
    seconds: float = 0.0
    before_last: bool = False  # the last step judged against stable in the same intervals


@dataclass(frozen=True)
class JudgeVerdict:
    outcome: Outcome
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    name: str
    window_intervals: int  # how many recent intervals the observation should span

    def judge(
        self,
        metric: MetricDefinition,
        observation: Observation,
        *,
        metrics_count: int = 1,
        state: Mapping[str, Any] | None = None,
        step: Step | None = None,
    ) -> JudgeVerdict: ...


def _values(metric: MetricDefinition, obs: Observation) -> tuple[str, str]:
    unit = f" {metric.unit}" if metric.unit else ""
    return f"canary {fmt(obs.canary_value)}{unit}", f"(stable {fmt(obs.stable_value)}{unit})"


@dataclass
class ThresholdJudge:
    """Flagger-style: fail the interval when the canary is outside the threshold range."""

    name: str = "threshold"
    window_intervals: int = 1
    min_requests: float = 20  # one request never passes or fails a canary

    def judge(
        self,
        metric: MetricDefinition,
        observation: Observation,
        *,
        metrics_count: int = 1,
        state: Mapping[str, Any] | None = None,
        step: Step | None = None,
    ) -> JudgeVerdict:
        value = observation.canary_value
        detail = {
            "threshold": str(metric.threshold),
            "canary": value,
            "stable": observation.stable_value,
            "method": "threshold",
            "n_canary": observation.canary_requests,
            "n_stable": observation.stable_requests,
        }
        if value is None or observation.canary_requests < self.min_requests:
            seen = fmt(observation.canary_requests)
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: too little canary traffic ({seen} < {fmt(self.min_requests)})",
                {**detail, "method": "threshold", "n_canary": observation.canary_requests},
            )
        canary, stable = _values(metric, observation)
        if not metric.threshold.contains(value):
            reason = f"{metric.name} of {canary} {metric.threshold.violation(value)} {stable}"
            return JudgeVerdict(Outcome.FAIL, reason, detail)
        return JudgeVerdict(Outcome.PASS, f"{metric.name} of {canary} within {metric.threshold} {stable}", detail)


@dataclass
class FailureLimitJudge:
    """Argo Rollouts-style: a failed measurement counts; ``fail`` once failures > limit."""

    failure_limit: int = 2
    name: str = "failure-limit"
    window_intervals: int = 1

    def judge(
        self,
        metric: MetricDefinition,
        observation: Observation,
        *,
        metrics_count: int = 1,
        state: Mapping[str, Any] | None = None,
        step: Step | None = None,
    ) -> JudgeVerdict:
        failures = int((state or {}).get("failures", 0))
        measured = ThresholdJudge().judge(metric, observation)
        if measured.outcome != Outcome.FAIL:
            return JudgeVerdict(measured.outcome, measured.reason, measured.detail, {"failures": failures})
        failures += 1
        detail = {**measured.detail, "failures": failures, "failure_limit": self.failure_limit}
        if failures > self.failure_limit:
            limit = self.failure_limit
            reason = f"{measured.reason}; {failures} failed measurements > limit {limit}"
            return JudgeVerdict(Outcome.FAIL, reason, detail, {"failures": failures})
        reason = f"{measured.reason}; failed measurement {failures} of limit {self.failure_limit}"
        return JudgeVerdict(Outcome.INCONCLUSIVE, reason, detail, {"failures": failures})


@dataclass
class MannWhitneyJudge:
    """Kayenta-style statistical judge (see the module docstring).

    A fixed-level test each interval (``alpha`` per look, divided by the number of metrics),
    as Kayenta judges each canary analysis run: kept for comparison (``benchmarks/judges.py``)
    and for those who ask for it; the default judge is ``sequential.SequentialJudge``. The
    success-rate p-value is exact (see ``_binary_mann_whitney``).
    """

    alpha: float = 0.001  # per look; divided by the number of metrics (Bonferroni)
    effect_floor: float = 0.25  # success rate: relative rise of the error ratio needed to fail
    rank_effect_floor: float = 0.1  # other metrics: rank-biserial correlation needed to fail
    min_canary_requests: float = 50
    min_stable_requests: float = 50
    guard_alpha: float = 0.01
    guard_min_requests: float = 20
    window_intervals: int = 1  # as the engine runs it: one interval per look
    name: str = "mann-whitney"

    def judge(
        self,
        metric: MetricDefinition,
        observation: Observation,
        *,
        metrics_count: int = 1,
        state: Mapping[str, Any] | None = None,
        step: Step | None = None,
    ) -> JudgeVerdict:
        obs = observation
        alpha = self.alpha / max(metrics_count, 1)
        canary, stable = _values(metric, obs)
        detail: dict[str, Any] = {
            "canary": obs.canary_value,
            "stable": obs.stable_value,
            "n_canary": obs.canary_requests,
            "n_stable": obs.stable_requests,
            "alpha": alpha,
            "threshold": str(metric.threshold),
            "method": "Mann-Whitney U per interval (Kayenta-style)",
        }
        guard = self._guard(metric, obs)
        if guard:
            detail["guard"] = str(metric.guard)
            return JudgeVerdict(Outcome.FAIL, f"{metric.name} of {canary} {guard} {stable}", detail)
        if obs.canary_value is None or obs.canary_requests < self.min_canary_requests:
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: too little canary traffic ({fmt(obs.canary_requests)} "
                f"< {fmt(self.min_canary_requests)} samples)",
                detail,
            )
        if obs.stable_value is None or obs.stable_requests < self.min_stable_requests:
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: too little stable traffic ({fmt(obs.stable_requests)} "
                f"< {fmt(self.min_stable_requests)} samples)",
                detail,
            )
        # H1: the canary is stochastically worse (smaller if higher is better, else greater).
        side = "less" if metric.direction == Direction.HIGHER_IS_BETTER else "greater"
        if metric.kind == MetricKind.SUCCESS_RATE:
            u, p, n_a, n_b = _binary_mann_whitney(obs.canary, obs.stable, side)
        else:
            a, b = obs.canary.expand(), obs.stable.expand()
            n_a, n_b = len(a), len(b)
            if np.all(a == a[0]) and np.all(b == a[0]):
                u, p = n_a * n_b / 2, 1.0
            else:
                result = mannwhitneyu(a, b, alternative=side, method="asymptotic")
                u, p = float(result.statistic), float(result.pvalue)
        rank_biserial = 2 * u / (n_a * n_b) - 1  # P(canary > stable) - P(canary < stable)
        if metric.kind == MetricKind.SUCCESS_RATE:
            # rare 0/1 outcomes: ranks barely move, the error ratio is the meaningful effect
            effect, floor = metric.worse(obs.canary_value, obs.stable_value), self.effect_floor
            stats = f"Mann-Whitney {_p(p)}, errors {effect:+.0%}"
        else:
            effect = rank_biserial if side == "greater" else -rank_biserial
            floor = self.rank_effect_floor
            stats = f"Mann-Whitney {_p(p)}, effect {effect:.2f}"
        detail.update(u=u, p_value=p, effect=effect, effect_floor=floor, rank_biserial=rank_biserial)
        if p < alpha and effect >= floor:
            word = "<" if metric.direction == Direction.HIGHER_IS_BETTER else ">"
            outside = metric.threshold.violation(obs.canary_value)
            where = f" {outside}" if outside else ""
            return JudgeVerdict(
                Outcome.FAIL,
                f"{metric.name} of {canary}{where} {stable}: canary {word} stable; {stats}",
                detail,
            )
        why = "not significant" if p >= alpha else "effect below floor"
        return JudgeVerdict(Outcome.PASS, f"{metric.name} of {canary} {stable}: {why}; {stats}", detail)

    def _guard(self, metric: MetricDefinition, obs: Observation) -> str:
        """The guard rail breach ("< 0.95 (guard)") when certain, else ""."""
        value, guard = obs.canary_value, metric.guard
        if value is None or obs.canary_requests < self.guard_min_requests:
            return ""
        breach = guard.violation(value)
        if not breach:
            return ""
        if metric.kind == MetricKind.SUCCESS_RATE and guard.min is not None:
            n = int(round(obs.canary_requests))
            ok = min(n, int(round(value * n)))
            # certain: the whole confidence interval of the success rate is below the floor
            if binomtest(ok, n, guard.min, alternative="less").pvalue >= self.guard_alpha:
                return ""
        return f"{breach} (guard rail)"


def _p(p: float) -> str:
    return "p<1e-16" if p < 1e-16 else f"p={p:.2g}"


def _binary_mann_whitney(canary: Distribution, stable: Distribution, side: str) -> tuple[float, float, int, int]:
    """Mann-Whitney U of 0/1 outcomes (1 = success) with its exact p-value.

    With two distinct values U is a linear function of the canary's success count given
    the margins, so its exact permutation distribution is hypergeometric: the p-value is
    Fisher's exact test. The normal approximation is far too optimistic with rare errors
    (a handful of 5xx), which caused false rollbacks at low traffic in the benchmark.
    """

    def split(d: Distribution) -> tuple[int, int]:
        ok = sum(c for v, c in zip(d.values, d.counts, strict=True) if v >= 0.5)
        return int(round(ok)), int(round(d.total - ok))

    (c_ok, c_err), (s_ok, s_err) = split(canary), split(stable)
    n_a, n_b = c_ok + c_err, s_ok + s_err
    # U counts pairs where the canary is greater (ok vs error), ties count half
    u = c_ok * s_err + 0.5 * (c_ok * s_ok + c_err * s_err)
    if (c_err + s_err) == 0 or (c_ok + s_ok) == 0:
        return u, 1.0, n_a, n_b
    p = float(fisher_exact([[c_ok, c_err], [s_ok, s_err]], alternative=side).pvalue)
    return u, p, n_a, n_b


def combine(verdicts: Sequence[JudgeVerdict]) -> Outcome:
    """Any fail fails; all pass passes; otherwise inconclusive."""
    outcomes = [v.outcome for v in verdicts]
    if Outcome.FAIL in outcomes:
        return Outcome.FAIL
    if outcomes and all(o == Outcome.PASS for o in outcomes):
        return Outcome.PASS
    return Outcome.INCONCLUSIVE
