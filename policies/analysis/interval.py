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

from policies.analysis.judges import Distribution, Judge, Observation, Outcome, Step
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
    both_bad: bool = False  # stable breaches the guard rail as the canary does
    accumulating: bool = False  # warm-up or not enough traffic yet: evidence is gathering

    @property
    def states(self) -> dict[str, dict[str, Any]]:
        """Per metric judge state, to pass to the next ``run_interval``."""
        return {m.metric: m.state for m in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (for the rollout's analysis results)."""
        return asdict(self)


def analysis_window(judge: Judge, *, interval_s: float, elapsed_s: float, requested_s: float | None = None) -> str:
    """The PromQL window one look measures: ``requested_s`` (a configured window) or the
    judge's ``window_intervals`` intervals, but never reaching back before the current
    attempt's phase began (``elapsed_s`` since it was applied: a retry or a new step never
    sees earlier samples), at least 1 s. E.g. 60 s intervals, a one-interval judge -> "60s";
    a 300 s window 90 s after the phase began -> "90s"."""
    wanted = requested_s if requested_s else judge.window_intervals * interval_s
    seconds = min(wanted, max(elapsed_s, 1.0))
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
    step: Step | None = None,
) -> IntervalResult:
    """Measure and judge every metric over ``window`` (a PromQL duration, e.g. ``"2m"``)."""
    if not metrics:
        raise ValueError("an analysis needs at least one metric")
    results = [
        _one(provider, metric, canary, stable, window, judge, len(metrics), (states or {}), step) for metric in metrics
    ]
    return summarize(results, judge=judge.name, window=window)


def summarize(results: Sequence[MetricResult], *, judge: str = "", window: str = "") -> IntervalResult:
    """The interval's verdict from its metrics' (the worst by ``_RANK``) and its reason."""
    if not results:
        raise ValueError("an interval needs at least one metric result")
    verdict = min((r.verdict for r in results), key=_RANK.index)
    reasons = [r.reason for r in results if r.verdict == verdict]
    if verdict == Verdict.PASS:
        reason = "all metrics pass: " + "; ".join(r.reason for r in results)
    else:
        reason = "; ".join(reasons)
    undecided = [r for r in results if r.verdict == Verdict.INCONCLUSIVE]
    both_bad = verdict == Verdict.INCONCLUSIVE and any(r.detail.get("both_bad") for r in undecided)
    accumulating = (
        verdict == Verdict.INCONCLUSIVE
        and bool(undecided)
        and all(r.detail.get("why") in ACCUMULATING for r in undecided)
    )
    return IntervalResult(verdict, reason, tuple(results), judge, window, both_bad, accumulating)


ACCUMULATING = ("warm-up", "not enough traffic", "no canary data", "suspicious", "not enough evidence yet")


def _one(
    provider: MetricsProvider,
    metric: MetricDefinition,
    canary: Target,
    stable: Target,
    window: str,
    judge: Judge,
    count: int,
    states: Mapping[str, Mapping[str, Any]],
    step: Step | None = None,
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
            metric.name,
            Verdict.ERROR,
            f"{metric.name}: metrics provider {kind}: {exc}",
            threshold=threshold,
            detail={"error": str(exc), "kind": kind},
            state=state,
            **bounds,
        )
    if canary_sample is None or canary_sample.value is None:
        # no data never passes and never fails: the judge's evidence is kept as it was
        return MetricResult(
            metric.name,
            Verdict.NO_DATA,
            f"{metric.name}: no data for canary {canary} in the last {window} (no traffic?)",
            stable=None if stable_sample is None else stable_sample.value,
            threshold=threshold,
            state=state,
            **bounds,
        )
    observation = Observation(
        canary_sample.samples,
        stable_sample.samples if stable_sample is not None else Distribution(),
        canary_sample.value,
        None if stable_sample is None else stable_sample.value,
    )
    verdict = judge.judge(metric, observation, metrics_count=count, state=state, step=step)
    return MetricResult(
        metric.name,
        Verdict(verdict.outcome.value),
        verdict.reason,
        observation.canary_value,
        observation.stable_value,
        threshold,
        verdict.detail,
        dict(verdict.state),
        **bounds,
    )


__all__ = [
    "IntervalResult",
    "MetricResult",
    "Outcome",
    "Verdict",
    "analysis_window",
    "run_interval",
    "summarize",
]
