"""One analysis interval: every metric for canary and stable, judged, summed up.

``run_interval(...) -> IntervalResult``; ``verdict`` is ``fail`` when a metric failed
(the canary is worse), ``error`` when the metrics backend failed (outage, bad query),
``no_data`` when the canary had no traffic / the query was empty, ``inconclusive`` when a
judge could not decide (too few samples, or a failed measurement below the judge's own
limit), ``pass`` when every metric passed. ``reason`` is one line a person reads at once,
e.g. ``request-success-rate of canary 0.947 < 0.99 (stable 0.999): canary < stable;
Mann-Whitney p=0.0004, errors +5200%``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from policies.analysis.judges import Distribution, Judge, Observation, Outcome
from policies.analysis.metrics import MetricDefinition, Target
from policies.analysis.providers import MetricsProvider, ProviderError, ProviderUnavailable


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no_data"
    ERROR = "error"


# how one verdict outranks another when metrics disagree: an observed failure wins,
# then a backend error, then missing data, then undecided; pass only if all pass
_RANK = [Verdict.FAIL, Verdict.ERROR, Verdict.NO_DATA, Verdict.INCONCLUSIVE, Verdict.PASS]


@dataclass(frozen=True)
class MetricResult:
    metric: str
    verdict: Verdict
    reason: str
    canary: float | None = None
    stable: float | None = None
    threshold: str = ""  # as a person reads it: ">= 0.99", "<= 500", "[0.1, 0.9]"
    detail: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # the judge's state to carry over
    threshold_min: float | None = None  # the same bounds as numbers (charts)
    threshold_max: float | None = None


@dataclass(frozen=True)
class IntervalResult:
    verdict: Verdict
    reason: str
    metrics: tuple[MetricResult, ...] = ()
    judge: str = ""
    window: str = ""

    @property
    def states(self) -> dict[str, dict[str, Any]]:
        """Per metric judge state, to pass to the next ``run_interval``."""
        return {m.metric: m.state for m in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for the rollout's analysis results)."""
        return asdict(self)


def analysis_window(judge: Judge, *, interval_s: float, elapsed_s: float) -> str:
    """The PromQL window to measure over: the judge's ``window_intervals`` intervals, but
    never before the analysis started (``elapsed_s`` since the step began), at least one
    interval. E.g. 30 s intervals, 10-interval judge, 95 s elapsed -> ``"95s"``."""
    seconds = min(judge.window_intervals * interval_s, max(elapsed_s, interval_s))
    return f"{max(int(round(seconds)), 1)}s"


def run_interval(
    *,
    provider: MetricsProvider,
    metrics: Sequence[MetricDefinition],
    canary: Target,
    stable: Target,
    window: str,
    judge: Judge,
    states: Mapping[str, Mapping[str, Any]] | None = None,
) -> IntervalResult:
    """Measure and judge every metric over ``window`` (a PromQL duration, e.g. ``"2m"``)."""
    if not metrics:
        raise ValueError("an analysis needs at least one metric")
    results = [
        _one(provider, metric, canary, stable, window, judge, len(metrics), (states or {}))
        for metric in metrics
    ]
    return summarize(results, judge=judge.name, window=window)


def summarize(
    results: Sequence[MetricResult], *, judge: str = "", window: str = ""
) -> IntervalResult:
    """The interval's verdict from its metrics' (the worst by ``_RANK``) and its reason."""
    if not results:
        raise ValueError("an interval needs at least one metric result")
    verdict = min((r.verdict for r in results), key=_RANK.index)
    reasons = [r.reason for r in results if r.verdict == verdict]
    if verdict == Verdict.PASS:
        reason = "all metrics pass: " + "; ".join(r.reason for r in results)
    else:
        reason = "; ".join(reasons)
    return IntervalResult(verdict, reason, tuple(results), judge, window)


def _one(
    provider: MetricsProvider,
    metric: MetricDefinition,
    canary: Target,
    stable: Target,
    window: str,
    judge: Judge,
    count: int,
    states: Mapping[str, Mapping[str, Any]],
) -> MetricResult:
    state = dict(states.get(metric.name) or {})
    threshold = str(metric.threshold)
    bounds: dict[str, Any] = {"threshold_min": metric.threshold.min, "threshold_max": metric.threshold.max}
    try:
        canary_sample = provider.sample(metric, canary, window)
        stable_sample = provider.sample(metric, stable, window)
    except ProviderError as exc:
        kind = "unavailable" if isinstance(exc, ProviderUnavailable) else "query error"
        return MetricResult(
            metric.name, Verdict.ERROR, f"{metric.name}: metrics provider {kind}: {exc}",
            threshold=threshold, detail={"error": str(exc), "kind": kind}, state=state, **bounds,
        )
    if canary_sample is None or canary_sample.value is None:
        return MetricResult(
            metric.name, Verdict.NO_DATA,
            f"{metric.name}: no data for canary {canary} in the last {window} (no traffic?)",
            stable=None if stable_sample is None else stable_sample.value,
            threshold=threshold, state=state, **bounds,
        )
    observation = Observation(
        canary_sample.samples,
        stable_sample.samples if stable_sample is not None else Distribution(),
        canary_sample.value,
        None if stable_sample is None else stable_sample.value,
    )
    verdict = judge.judge(metric, observation, metrics_count=count, state=state)
    return MetricResult(
        metric.name, Verdict(verdict.outcome.value), verdict.reason,
        observation.canary_value, observation.stable_value, threshold,
        verdict.detail, dict(verdict.state), **bounds,
    )


__all__ = [
    "IntervalResult", "MetricResult", "Outcome", "Verdict", "analysis_window", "run_interval",
    "summarize",
]
