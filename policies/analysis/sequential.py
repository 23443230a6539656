"""The default canary judge: evidence accumulated over the attempt, tested sequentially.

Every analysis interval adds one *stratum* per metric: the canary's and the stable's counts
in that interval (requests and 5xx for the success rate; histogram bucket counts for the
latency). Nothing is re-tested from scratch: the judge keeps the strata of the current
attempt in its state (a new attempt starts with none) and, at each look, tests them all.

Comparisons (canary relative to stable in the same interval):

- errors: the Mantel-Haenszel rate ratio of canary vs stable 5xx over the strata
  (stratifying by interval removes incidents both versions share and the shift of traffic
  from step to step), with the Greenland-Robins variance of its log plus a between-interval
  variance (a random-effects model: bursts that hit one side and not the other, a random rate
  per interval as a beta-binomial across sub-intervals has): the DerSimonian-Laird estimate
  over the canary's intervals, shrunk towards twice the stable's own burstiness (read robustly
  across its intervals, warm-ups included) while there are few;
- latency tail and body: the share of requests slower than the stable's p99 (tail) and
  its median (body), read at the histogram bucket bound nearest to that quantile of the
  stable's pooled buckets; the same rate ratio test on those shares. A +50 % p99 with an
  unchanged median is a tripled share above the stable's p99. The tail's between-interval
  variance starts from a floor (``tail_heterogeneity``) and from the stable's spikes, all of
  them, so that a spike on one version one or two intervals long is not readily taken for a
  regression.

Each comparison is a mixture sequential probability ratio test (mSPRT, Johari et al. 2017,
"Always valid inference") of ``log(ratio) <= log(1 + tolerance)`` on the normal
approximation of the log ratio, mixing normals of sd ``tau`` x 1, 2.5 and 6.25 (``MIXTURE``:
power for small effects and for large ones seen through a large variance). Its p-value
(1 / likelihood ratio) is valid at every look, so looking each interval does not inflate
false rollbacks: a good canary is rolled back with probability at most ``alpha`` per
attempt (divided over the comparisons and metrics, Bonferroni). The effect is reported
with its always-valid (confidence sequence) interval. While the attempt holds few judged
canary intervals (``beyond_one_interval``, 3), too few for their own between-interval
variance to show, a comparison fails only if it stays significant without the canary's most
damning interval: one interval alone (a burst, a spike on one version) fails no comparison with
the stable (the guard rails still fail a canary on one interval).

Guard rails (absolute, on the current step's judged intervals): a canary whose success rate
is certainly below ``guard.min`` (a one-sided binomial test at ``guard_alpha``, counts
deflated by the overdispersion) fails at once, even at low traffic; when the stable's share in
the same window is beyond the same guard too (certainly or not) both versions are bad: the
canary is not blamed (unless the comparison shows it certainly worse than the stable), the
interval is inconclusive and says so (``both_bad`` in the detail; the run-level rule pauses
after ``both_bad_limit`` such intervals in a row).

The step's verdict: ``inconclusive`` during the warm-up after a weight change (the canary's
side not judged, the stable's kept), while the canary looks worse without certainty
(``hold_p``), at the step before the last until ``power_ratio`` more errors
(``tail_power_ratio`` more requests above the stable's p99) are ruled out, for up to
``power_wait_intervals`` intervals and only where waiting can show it, and until the step holds
``min_requests`` judged canary requests (then the
reason says how many more minutes that takes at the observed rate); ``fail`` on a guard
breach or a significant regression; ``pass`` otherwise. The last step (100 %, the stable
has no traffic left) compares each of its intervals with the baseline recorded before the
shift (the stable's strata of the attempt, pooled, its variance inflated by their own
dispersion) with ``baseline_tolerance``; a regression must show in two intervals in a row
(one alone holds the step: an incident of the whole service looks the same).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.stats import binomtest

from policies.analysis.judges import (
    JudgeVerdict,
    Observation,
    Outcome,
    Step,
    ThresholdJudge,
)
from policies.analysis.metrics import MetricDefinition, MetricKind, fmt

Stratum = dict[str, Any]
MAX_STRATA = 400  # a state bound: older strata are merged pairwise beyond it


@dataclass(frozen=True)
class Test:
    """One sequential comparison: the ratio, its always-valid interval and p-value."""

    name: str
    ratio: float
    low: float
    high: float
    p_value: float
    dispersion: float
    canary: float  # the rate compared (error share, share above the bound)
    stable: float
    bound: float | None = None  # the latency bound (ms) the shares are read at
    against: str = "stable"  # "stable" (same intervals) or "baseline" (before the shift)
    current_p: float = 1.0  # 1 / the likelihood ratio now (not the running minimum)
    confirmed: bool = True  # baseline: significant in the last two intervals too; stable: beyond one interval
    one_interval: bool = False  # significant only with the canary's most damning interval
    variance: float = math.inf  # of the log ratio, as tested (dispersion included)
    info_per_interval: float = 0.0  # 1 / variance one more interval like the latest adds (if no difference)
    canary_events: float = 0.0  # the events (5xx, slower requests) the canary's rate is read from

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.name, "ratio": self.ratio, "ratio_low": self.low,
            "ratio_high": self.high, "p_value": self.p_value, "dispersion": self.dispersion,
            "canary_rate": self.canary, "stable_rate": self.stable, "bound_ms": self.bound,
            "against": self.against, "current_p": self.current_p, "one_interval": self.one_interval,
        }  # fmt: skip

    def describe(self) -> str:
        what = {"errors": "5xx share", "tail": "share slower than the stable's p99",
                "body": "share slower than the stable's median"}[self.name]  # fmt: skip
        at = f" ({fmt(self.bound)} ms)" if self.bound is not None else ""
        side = "the baseline before the shift" if self.against == "baseline" else "stable"
        return (
            f"{what}{at} canary/{side} x{self.ratio:.2f} [{self.low:.2f}, {_upper(self.high)}], p={_pv(self.p_value)}"
        )


def _upper(value: float) -> str:
    return "inf" if not math.isfinite(value) or value > 1e6 else f"{value:.2f}"


def _pv(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


# --- the statistics -----------------------------------------------------------------------------


# The mixing distribution of the mSPRT: normal mixtures of sd tau x these factors, with these weights.
# A mixture of always-valid tests is itself always valid; the wide components give power where the
# variance is large (few events, bursty errors) and the effect too, at a cost of log(1 / 0.7) in the
# evidence a small effect needs.
MIXTURE = ((1.0, 0.7), (2.5, 0.2), (6.25, 0.1))


def _log_lr(distance: float, variance: float, tau: float) -> float:
    """log of the mixture likelihood ratio for an estimate ``distance`` away from the null value."""
    v = variance
    terms = []
    for factor, weight in MIXTURE:
        t2 = (tau * factor) ** 2
        terms.append(math.log(weight) + 0.5 * math.log(v / (v + t2)) + t2 * distance * distance / (2 * v * (v + t2)))
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def msprt(theta: float, variance: float, *, theta0: float, tau: float) -> float:
    """The always-valid one-sided p-value of ``theta <= theta0`` for an estimate ``theta`` with
    ``variance``: 1 / the normal-mixture likelihood ratio (mixing N(theta0, (tau x f)^2) over
    ``MIXTURE``)."""
    if variance <= 0 or not math.isfinite(variance) or theta <= theta0:
        return 1.0
    log_lr = _log_lr(theta - theta0, variance, tau)
    return 1.0 if log_lr <= 0 else math.exp(-min(log_lr, 700.0))


def confidence_sequence(theta: float, variance: float, *, alpha: float, tau: float) -> tuple[float, float]:
    """The always-valid (1 - alpha) interval of ``theta`` (the mSPRT's inversion: the values whose
    mixture likelihood ratio stays below 1 / alpha)."""
    if variance <= 0 or not math.isfinite(variance):
        return -math.inf, math.inf
    target = math.log(1 / alpha)
    low, high = 0.0, math.sqrt(variance) * 4 + 1.0
    while _log_lr(high, variance, tau) < target:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        if _log_lr(mid, variance, tau) < target:
            low = mid
        else:
            high = mid
    return theta - high, theta + high


def mantel_haenszel(
    strata: Sequence[tuple[float, float, float, float]],
) -> tuple[float, float, int] | None:
    """The log Mantel-Haenszel rate ratio of canary vs stable events over strata
    ``(n_canary, events_canary, n_stable, events_stable)``, its Greenland-Robins variance and
    the number of informative strata; None when no stratum has both sides."""
    rows = [(nc, ec, ns, es) for nc, ec, ns, es in strata if nc > 0 and ns > 0]
    if not rows:
        return None
    if sum(r[1] for r in rows) == 0 or sum(r[3] for r in rows) == 0:
        # no event on one side: half an event on each (continuity), spread by size
        total_c, total_s = sum(r[0] for r in rows), sum(r[2] for r in rows)
        rows = [(nc, ec + 0.5 * nc / total_c, ns, es + 0.5 * ns / total_s)
                for nc, ec, ns, es in rows]  # fmt: skip
    r_sum = s_sum = var_num = null_num = null_den = 0.0
    for nc, ec, ns, es in rows:
        n = nc + ns
        r_sum += ec * ns / n
        s_sum += es * nc / n
        var_num += (nc * ns * (ec + es) - ec * es * n) / (n * n)
        # the same weights' variance under "no difference" (pooled rate per stratum): the
        # Greenland-Robins estimate collapses when a side's share is near 0 or 1 (few requests)
        pooled, weight = (ec + es) / n, nc * ns / n
        null_num += weight * weight * pooled * (1 - pooled) * (1 / nc + 1 / ns)
        null_den += weight * pooled
    if r_sum <= 0 or s_sum <= 0:
        return None
    informative = sum(1 for nc, ec, ns, es in rows if ec + es > 0)
    variance = max(var_num, 1e-12) / (r_sum * s_sum)
    if null_den > 0:
        variance = max(variance, null_num / (null_den * null_den))
    return math.log(r_sum / s_sum), variance, informative


def dispersion(strata: Sequence[tuple[float, float, float, float]], log_ratio: float) -> tuple[float, int]:
    """Pearson chi-square / df of the canary's share of each stratum's events given the common
    ratio (1 for binomial counts, more when events come in bursts), and its df."""
    ratio = math.exp(log_ratio)
    chi2, used = 0.0, 0
    for nc, ec, ns, es in strata:
        m = ec + es
        if nc <= 0 or ns <= 0 or m <= 0:
            continue
        share = nc * ratio / (nc * ratio + ns)
        var = m * share * (1 - share)
        if var <= 1e-9:
            continue
        chi2 += (ec - m * share) ** 2 / var
        used += 1
    df = used - 1
    return (chi2 / df if df > 0 else 1.0), max(df, 0)


MIN_EVENTS_FOR_HETEROGENEITY = 4  # an interval's events (both sides) to show its own log ratio


def heterogeneity(strata: Sequence[tuple[float, float, float, float]]) -> tuple[float, int] | None:
    """DerSimonian-Laird: the between-interval variance of the log rate ratio over the strata with
    enough events, and its df (intervals - 1); None with fewer than two such intervals."""
    points = []
    for nc, ec, ns, es in strata:
        if nc <= 0 or ns <= 0 or ec + es < MIN_EVENTS_FOR_HETEROGENEITY:
            continue
        y = math.log((ec + 0.5) / nc) - math.log((es + 0.5) / ns)
        points.append((y, 1.0 / (1.0 / (ec + 0.5) + 1.0 / (es + 0.5))))
    if len(points) < 2:
        return None
    total = sum(w for _, w in points)
    mean = sum(y * w for y, w in points) / total
    q = sum(w * (y - mean) ** 2 for y, w in points)
    scale = total - sum(w * w for _, w in points) / total
    df = len(points) - 1
    return (max(0.0, (q - df) / scale) if scale > 0 else 0.0), df


def stable_burstiness(strata: Sequence[tuple[float, float, float, float]], *, robust: bool = True) -> float:
    """The variance of the stable's log event rate across its intervals beyond Poisson noise, read
    robustly (the median absolute deviation): steady bursts count, an incident of one or two
    intervals (which hits both versions, and cancels in their ratio) does not. 0 for steady counts.
    ``robust=False``: every interval counts (the DerSimonian-Laird estimate on one side)."""
    side = [(ns, es) for _, _, ns, es in strata if ns > 0]
    total_n, total_e = sum(n for n, _ in side), sum(e for _, e in side)
    if len(side) < 2 or total_e <= 0:
        return 0.0
    rate = total_e / total_n
    points = [(math.log((e + 0.5) / (n * rate + 0.5)), 1.0 / (n * rate + 0.5)) for n, e in side
              if n * rate >= MIN_EVENTS_FOR_HETEROGENEITY]  # fmt: skip
    if len(points) < 2:
        return 0.0
    deviations = [y for y, _ in points]
    if not robust:
        weights = [1.0 / noise for _, noise in points]
        total = sum(weights)
        mean = sum(w * y for w, (y, _) in zip(weights, points, strict=True)) / total
        q = sum(w * (y - mean) ** 2 for w, (y, _) in zip(weights, points, strict=True))
        scale = total - sum(w * w for w in weights) / total
        return max(0.0, (q - (len(points) - 1)) / scale) if scale > 0 else 0.0
    centre = statistics.median(deviations)
    spread = 1.4826 * statistics.median(abs(y - centre) for y in deviations)
    return max(0.0, spread * spread - statistics.median(noise for _, noise in points))


def baseline_shift(
    mine: Sequence[tuple[float, float, float, float]],
    before: Sequence[tuple[float, float, float, float]],
) -> tuple[float, float] | None:
    """The log ratio of the canary's rate in ``mine`` to the stable's rate over the intervals
    ``before`` it (both pooled), and its variance: binomial, inflated by the baseline's own
    overdispersion across its intervals (Pearson chi-square / df, shrunk towards 1 with two
    prior df): what the baseline itself swings (bursts, spikes, incidents) the canary's
    intervals may swing too."""
    nc, ec = sum(r[0] for r in mine), sum(r[1] for r in mine)
    side = [(r[2], r[3]) for r in before if r[2] > 0]
    ns, es = sum(n for n, _ in side), sum(e for _, e in side)
    if nc <= 0 or ns <= 0:
        return None
    rate = (es + 0.5) / (ns + 1.0)
    chi2 = sum((e - n * rate) ** 2 / (n * rate * (1 - rate)) for n, e in side) if rate < 1 else 0.0
    df = len(side) - 1
    phi = max(1.0, (2.0 + chi2) / (2.0 + df)) if df > 0 else 2.0
    theta = math.log((ec + 0.5) / (nc + 1.0)) - math.log(rate)
    return theta, phi * (1 / (ec + 0.5) + 1 / (es + 0.5))


# --- the judge --------------------------------------------------------------------------------


@dataclass
class SequentialJudge:
    """See the module docstring; every knob has a default that works untuned."""

    alpha: float = 0.01  # false rollback of a good canary per attempt, all comparisons
    tau: float = 0.4  # mixing sd of the log ratio (effects around x1.3 to x3)
    tolerance: float = 0.05  # a ratio up to 1.05 is not a regression
    baseline_tolerance: float = 2.0  # last step vs the baseline recorded before the shift (x3)
    dispersion_prior: float = 1.0  # overdispersion assumed before the intervals show it
    dispersion_prior_df: float = 2.0  # (the prior is the stable's own burstiness, at least this)
    dispersion_cap: float = 20.0
    min_requests: float = 100  # judged canary requests a step needs before it can pass
    hold_p: float = 0.3  # a step does not pass while a comparison's current p-value is below it
    hold_events: float = 10  # canary events a "looks worse" needs to hold the step before the last
    power_ratio: float = 1.3  # before the last step: rule out this ratio of errors (and of the body) ...
    tail_power_ratio: float = 2.0  # ... and this of the share above the stable's p99 (a +25 % p99 is x2-3)
    power_wait_intervals: int = 20  # ... gathering up to this many judged intervals for it
    power_min_abs: float = 0.002  # ... unless that ratio is below 0.2 points of share anyway
    guard_alpha: float = 0.001
    tail_heterogeneity: float = 0.2  # between-interval variance of the log tail ratio assumed at least ...
    tail_prior_df: float = 4.0  # ... weighing this many intervals
    beyond_one_interval: int = 3  # while the attempt has this many judged canary intervals, a regression
    # must hold without the canary's most damning one
    tail_quantile: float = 0.99
    body_quantile: float = 0.5
    name: str = "sequential"
    window_intervals: int = 1  # each look measures one interval; the state holds the rest

    def judge(
        self,
        metric: MetricDefinition,
        observation: Observation,
        *,
        metrics_count: int = 1,
        state: Mapping[str, Any] | None = None,
        step: Step | None = None,
    ) -> JudgeVerdict:
        step = step or Step()
        strata: list[Stratum] = [dict(s) for s in (state or {}).get("strata") or []]
        detail: dict[str, Any] = {
            "method": "mSPRT on Mantel-Haenszel rate ratios (always-valid p-values)",
            "canary": observation.canary_value, "stable": observation.stable_value,
            "phase": step.phase, "warmup": step.warmup, "last_step": step.last,
        }  # fmt: skip
        if metric.kind == MetricKind.CUSTOM:
            verdict = ThresholdJudge(min_requests=1).judge(metric, observation)
            return JudgeVerdict(verdict.outcome, verdict.reason,
                                {**verdict.detail, "method": "threshold (custom metric)"},
                                {"strata": strata})  # fmt: skip
        if step.warmup:
            detail["why"] = "warm-up"
            # the canary's side is not judged; the stable's is kept: it shows the stable's own
            # burstiness (the dispersion assumed before the canary's intervals show theirs) and
            # belongs to the baseline the last step compares with
            strata = _bounded([*strata, _stable_only(_stratum(metric, observation, step))])
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: warm-up after the weight change (interval not judged)",
                detail, {"strata": strata},
            )  # fmt: skip
        strata.append(_stratum(metric, observation, step))
        strata = _bounded(strata)
        new_state = {"strata": strata}
        mine = [s for s in strata if s["phase"] == step.phase and not s.get("warmup")]
        n_canary = sum(s["nc"] for s in mine)
        n_stable = sum(s["ns"] for s in mine)
        detail.update(n_canary=n_canary, n_stable=n_stable,
                      n_canary_attempt=sum(s["nc"] for s in strata),
                      n_stable_attempt=sum(s["ns"] for s in strata))  # fmt: skip
        if n_canary <= 0:
            detail["why"] = "no canary data"
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: no canary request judged in this step yet",
                detail,
                new_state,
            )
        # guard rails, on this step's judged intervals, both sides
        phi = self._dispersion(metric, strata)
        # the latest interval alone (an outright failure shows at once), else the step's intervals
        # in which stable stayed within the guard (a shared incident is not held against the canary)
        guard = self._guard(metric, strata[-1:], phi)
        if guard is None:
            calm = [s for s in mine if not self._stable_beyond_guard(metric, [s])]
            guard = self._guard(metric, calm, phi) if len(calm) > 1 else None
        if guard is not None:
            detail["guard"] = guard[1]
            if not guard[0]:
                detail["why"] = "guard rail"
                return JudgeVerdict(
                    Outcome.FAIL,
                    f"{metric.name}: canary breaches the guard rail: {guard[1]}",
                    detail,
                    new_state,
                )
        # one interval alone is not a regression, unless the canary certainly breaches the guard
        # in it (a failing canary in an incident both versions share is still blamed at once)
        tests = self._tests(metric, strata, step, metrics_count, one_interval_rule=guard is None)
        detail["tests"] = [t.as_dict() for t in tests]
        failed = [t for t in tests if t.p_value < self._alpha(metrics_count) and t.confirmed]
        summary = "; ".join(t.describe() for t in tests) or "no comparison possible yet"
        if failed:
            # also while both versions breach the guard: a canary certainly worse than the stable
            # in the same intervals is blamed for that (a failing canary in an incident)
            detail["why"] = "significant regression"
            both = f"both versions breach the guard rail ({guard[1]}), and the " if guard else ""
            return JudgeVerdict(
                Outcome.FAIL,
                f"{metric.name}: {both}canary worse than {failed[0].against}: {failed[0].describe()}",
                detail, new_state,
            )  # fmt: skip
        if guard is not None:
            detail.update(both_bad=True, why="both versions breach the guard rail")
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: both versions are bad ({guard[1]}): not the canary's fault, "
                "waiting for stable to recover", detail, new_state,
            )  # fmt: skip
        suspicious = [
            t
            for t in tests
            if (t.against == "stable" and t.current_p < self.hold_p and t.ratio > 1)
            or (t.p_value < self._alpha(metrics_count) and not t.confirmed)
        ]
        if suspicious:
            first = sorted(suspicious, key=lambda t: not t.one_interval)[0]
            detail.update(why="suspicious", one_interval=first.one_interval)
            why = (" (certain only with its worst interval: one interval alone is not a regression yet)"
                   if first.one_interval else "")  # fmt: skip
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: canary looks worse but not certainly{why}: {first.describe()}; "
                "gathering more evidence before passing", detail, new_state,
            )  # fmt: skip
        left = self.power_wait_intervals - len(mine)
        unresolved = [
            t
            for t in tests
            if t.against == "stable"
            and t.high > self._power_ratio(t)
            and t.stable * (t.high - 1) > self.power_min_abs
            and ((t.ratio > 1 and t.canary_events >= self.hold_events) or self._resolvable(t, left, metrics_count))
        ]
        if step.before_last and unresolved and left > 0:
            detail.update(why="not enough evidence yet")
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: a x{self._power_ratio(unresolved[0]):g} regression is not ruled out yet before the "
                f"last step ({unresolved[0].describe()}); gathering up to {left} more intervals",
                detail, new_state,
            )  # fmt: skip
        if n_canary < self.min_requests:
            minutes = _minutes_left(mine, self.min_requests - n_canary)
            detail.update(why="not enough traffic", minutes_left=minutes)
            when = f"about {minutes} more minutes at this rate" if minutes else "rate unknown"
            return JudgeVerdict(
                Outcome.INCONCLUSIVE,
                f"{metric.name}: not enough traffic yet ({fmt(n_canary)} of "
                f"{fmt(self.min_requests)} canary requests), {when}; {summary}",
                detail, new_state,
            )  # fmt: skip
        detail["why"] = "no regression"
        return JudgeVerdict(
            Outcome.PASS, f"{metric.name}: no regression ({fmt(n_canary)} canary / "
            f"{fmt(n_stable)} stable requests this step); {summary}", detail, new_state,
        )  # fmt: skip

    def _power_ratio(self, test: Test) -> float:
        return self.tail_power_ratio if test.name == "tail" else self.power_ratio

    def _resolvable(self, test: Test, left: int, metrics_count: int) -> bool:
        """Whether ``left`` more intervals like the latest could bring a good canary's upper bound under
        the power ratio. A canary that looks no worse than stable (or worse on a handful of events) is
        not held for what this traffic cannot show in the wait; one that looks worse is (the evidence
        gathered may convict it)."""
        if left <= 0 or test.info_per_interval <= 0 or not math.isfinite(test.variance):
            return False
        projected = 1.0 / (1.0 / test.variance + left * test.info_per_interval)
        _, high = confidence_sequence(0.0, projected, alpha=self._alpha(metrics_count), tau=self.tau)
        return high < math.log(self._power_ratio(test))

    def _alpha(self, metrics_count: int) -> float:
        # errors: one comparison; latency: tail and body. Spread over the built-in pair.
        return self.alpha / (3 * max(metrics_count, 1) / 2)

    # guard rails --------------------------------------------------------------------------

    def _dispersion(self, metric: MetricDefinition, strata: list[Stratum]) -> float:
        """The overdispersion of the error counts the strata show (shrunk towards the prior)."""
        if metric.kind != MetricKind.SUCCESS_RATE:
            return self.dispersion_prior
        rows = [(s["nc"], s["ec"], s["ns"], s["es"]) for s in strata]
        found = mantel_haenszel(rows)
        if found is None:
            return self.dispersion_prior
        return self._shrunk(*dispersion(rows, found[0]), prior=self._prior(rows))

    def _prior(self, rows: Sequence[tuple[float, float, float, float]]) -> float:
        """The stable's own burstiness across the intervals (Pearson chi-square / df of its
        counts around its mean rate): until the canary's intervals say otherwise, the canary
        is assumed as bursty as the stable."""
        side = [(ns, es) for _, _, ns, es in rows if ns > 0]
        total_n, total_e = sum(n for n, _ in side), sum(e for _, e in side)
        if len(side) < 2 or total_e <= 0 or total_e >= total_n:
            return self.dispersion_prior
        rate = total_e / total_n
        chi2 = sum((e - n * rate) ** 2 / (n * rate * (1 - rate)) for n, e in side)
        return min(max(self.dispersion_prior, chi2 / (len(side) - 1)), self.dispersion_cap)

    def _heterogeneity(self, rows: Sequence[tuple[float, float, float, float]], name: str = "errors") -> float:
        """The between-interval variance of the log ratio (bursts that hit one side and not the
        other: a random rate per interval, as a beta-binomial across sub-intervals has): the
        DerSimonian-Laird estimate over the intervals with events, shrunk towards twice the stable's
        own burstiness across its intervals (the canary assumed as bursty, independently) while
        there are few of them. Bursts both versions share cancel in the ratio and add nothing.

        The tail (the slowest 1 %) swings more than its counts show even on steady traffic (a GC
        pause, a cold cache, a slow dependency on one pod): its prior is twice the stable's
        burstiness read with every interval (a spike in a third of them is the rule there, not an incident to
        look past), at least ``tail_heterogeneity``, and weighs ``tail_prior_df`` intervals."""
        found = heterogeneity(rows)
        if name == "tail":
            prior = max(2 * stable_burstiness(rows, robust=False), self.tail_heterogeneity)
            prior_df = self.tail_prior_df
        else:
            prior, prior_df = 2 * stable_burstiness(rows), self.dispersion_prior_df
        if found is None:
            return prior
        tau2, df = found
        return (prior * prior_df + tau2 * df) / (prior_df + df)

    def _shrunk(self, phi_hat: float, df: int, *, prior: float | None = None) -> float:
        prior = self.dispersion_prior if prior is None else prior
        return max(1.0, (prior * self.dispersion_prior_df + phi_hat * df)
                   / (self.dispersion_prior_df + df))  # fmt: skip

    def _stable_beyond_guard(self, metric: MetricDefinition, strata: list[Stratum]) -> bool:
        """The stable's share over ``strata`` is beyond the guard (as an estimate, not a test):
        certainty is asked of the canary to be blamed, not of the stable that would excuse it."""
        guard = metric.guard
        n = sum(s["ns"] for s in strata)
        if n <= 0:
            return False
        if metric.kind == MetricKind.SUCCESS_RATE and guard.min is not None:
            return sum(s["es"] for s in strata) / n > 1.0 - guard.min
        if metric.kind == MetricKind.LATENCY_P99 and guard.max is not None:
            return sum(_above(s["s"], guard.max) for s in strata) / n > 1 - self.tail_quantile
        return False

    def _guard(self, metric: MetricDefinition, mine: list[Stratum], phi: float) -> tuple[bool, str] | None:
        """None unless the canary certainly breaches the guard over ``mine``; else whether the
        stable is beyond it too (both versions bad), and what was seen."""
        guard = metric.guard
        ns = sum(s["ns"] for s in mine)
        stable_bad = self._stable_beyond_guard(metric, mine)
        if metric.kind == MetricKind.SUCCESS_RATE and guard.min is not None:
            nc, ec = sum(s["nc"] for s in mine), sum(s["ec"] for s in mine)
            if not _certainly_above(ec, nc, 1.0 - guard.min, self.guard_alpha, phi):
                return None
            es = sum(s["es"] for s in mine)
            return stable_bad, (f"success rate canary {fmt(1 - ec / nc)} < {fmt(guard.min)} "
                                f"(stable {fmt(1 - es / ns) if ns else 'n/a'})")  # fmt: skip
        if metric.kind == MetricKind.LATENCY_P99 and guard.max is not None:
            nc = sum(sum(s["c"].values()) for s in mine)
            ac = sum(_above(s["c"], guard.max) for s in mine)
            if not _certainly_above(ac, nc, 1 - self.tail_quantile, self.guard_alpha, self.dispersion_prior):
                return None
            as_ = sum(_above(s["s"], guard.max) for s in mine)
            return stable_bad, (f"p99 above {fmt(guard.max)} ms: {fmt(ac / nc * 100)} % of canary requests "
                                f"slower (stable {fmt(as_ / ns * 100) if ns else 'n/a'} %)")  # fmt: skip
        return None

    # comparisons --------------------------------------------------------------------------

    def _tests(
        self, metric: MetricDefinition, strata: list[Stratum], step: Step, metrics_count: int,
        *, one_interval_rule: bool = True,
    ) -> list[Test]:  # fmt: skip
        alpha = self._alpha(metrics_count)
        if metric.kind == MetricKind.SUCCESS_RATE:
            rows = [(s["nc"], s["ec"], s["ns"], s["es"]) for s in strata]
            return self._compare("errors", rows, strata, step, alpha, None, one_interval_rule)
        pooled_stable = _pool([s["s"] for s in strata])
        tests = []
        for name, q in (("tail", self.tail_quantile), ("body", self.body_quantile)):
            bound = _bound_for(pooled_stable, q)
            if bound is None:
                continue
            rows = [(_total(s["c"]), _above(s["c"], bound), _total(s["s"]), _above(s["s"], bound))
                    for s in strata]  # fmt: skip
            tests += self._compare(name, rows, strata, step, alpha, bound, one_interval_rule)
        return tests

    def _compare(
        self, name: str, rows: list[tuple[float, float, float, float]], strata: list[Stratum],
        step: Step, alpha: float, bound: float | None, one_interval_rule: bool = True,
    ) -> list[Test]:  # fmt: skip
        found: list[Test] = []
        concurrent = self._concurrent(name, rows, alpha, bound)
        if concurrent is not None:
            test, tau2 = concurrent
            test = dataclasses.replace(test, info_per_interval=_info(rows[-1], rows, tau2))
            judged = sum(1 for row in rows if row[0] > 0)
            if test.p_value < alpha and one_interval_rule and judged <= self.beyond_one_interval:
                # one interval alone does not make a regression (a spike, a burst on one version):
                # the evidence must hold without the canary's most damning interval
                without = [self._concurrent(name, rows[:i] + rows[i + 1 :], alpha, bound)
                           for i, row in enumerate(rows) if row[0] > 0]  # fmt: skip
                worst = max((1.0 if w is None else w[0].p_value) for w in without)
                test = dataclasses.replace(test, confirmed=worst < alpha, one_interval=worst >= alpha)
            found.append(test)
        if step.last:
            # the stable has no traffic left: this step's canary vs the baseline recorded before,
            # interval by interval; a regression must show in two judged intervals in a row (an
            # incident of the whole service during this step shows in one and passes)
            mine = [r for r, s in zip(rows, strata, strict=True) if s["phase"] == step.phase and not s.get("warmup")]
            before = [r for r, s in zip(rows, strata, strict=True)
                      if s["phase"] != step.phase and r[2] > 0]  # fmt: skip
            looks = []
            for row in mine[-2:]:
                versus = baseline_shift([row], before)
                if versus is not None:
                    theta, var = versus
                    looks.append(self._test(name, theta, var, 1.0, [row] + [(0, 0, r[2], r[3]) for r in before],
                                            alpha, bound, self.baseline_tolerance, "baseline"))  # fmt: skip
            if looks:
                latest = looks[-1]
                confirmed = len(looks) == 2 and all(t.p_value < alpha for t in looks)
                found.append(dataclasses.replace(latest, confirmed=confirmed))
        return found

    def _concurrent(
        self, name: str, rows: list[tuple[float, float, float, float]], alpha: float, bound: float | None
    ) -> tuple[Test, float] | None:
        """The comparison with the stable in the same intervals, and the between-interval variance."""
        found = mantel_haenszel(rows)
        if found is None:
            return None
        theta, var, _ = found
        tau2 = self._heterogeneity(rows, name)
        total = var + tau2 * _concentration(rows)
        return self._test(name, theta, total, total / var, rows, alpha, bound, self.tolerance, "stable"), tau2

    def _test(
        self, name: str, theta: float, var: float, phi: float,
        rows: list[tuple[float, float, float, float]], alpha: float, bound: float | None,
        tolerance: float, against: str,
    ) -> Test:  # fmt: skip
        p = msprt(theta, var, theta0=math.log1p(tolerance), tau=self.tau)
        # the hold zone looks at "any worse than stable" (no tolerance): evidence of a small
        # regression keeps the step gathering instead of passing it
        current = msprt(theta, var, theta0=0.0, tau=self.tau)
        low, high = confidence_sequence(theta, var, alpha=alpha, tau=self.tau)
        nc, ec = sum(r[0] for r in rows), sum(r[1] for r in rows)
        ns, es = sum(r[2] for r in rows), sum(r[3] for r in rows)
        return Test(
            name, math.exp(theta), math.exp(low), math.exp(min(high, 700.0)), p, phi,
            ec / nc if nc else 0.0, es / ns if ns else 0.0, bound, against, current, variance=var,
            canary_events=ec,
        )  # fmt: skip


# --- strata helpers -------------------------------------------------------------------------------


def _info(latest: tuple[float, float, float, float], rows: Sequence[tuple[float, float, float, float]],
          tau2: float) -> float:  # fmt: skip
    """The information (1 / variance of the log ratio) one more interval of ``latest``'s traffic adds
    when both sides share the pooled event rate of ``rows``, the between-interval variance included."""
    nc, _, ns, _ = latest
    total_n = sum(r[0] + r[2] for r in rows)
    rate = sum(r[1] + r[3] for r in rows) / total_n if total_n > 0 else 0.0
    if nc <= 0 or ns <= 0 or rate <= 0:
        return 0.0
    return 1.0 / (1.0 / (rate * nc) + 1.0 / (rate * ns) + tau2)


def _concentration(rows: Sequence[tuple[float, float, float, float]]) -> float:
    """sum(w^2) / sum(w)^2 of the Mantel-Haenszel weights: how much of a between-interval variance
    the pooled ratio keeps (1 for one interval, 1/k for k equal ones)."""
    weights = [nc * ns / (nc + ns) for nc, _, ns, _ in rows if nc > 0 and ns > 0]
    total = sum(weights)
    return sum(w * w for w in weights) / (total * total) if total > 0 else 1.0


def _stratum(metric: MetricDefinition, obs: Observation, step: Step) -> Stratum:
    base: Stratum = {"phase": step.phase, "at": step.at, "seconds": step.seconds}
    if metric.kind == MetricKind.SUCCESS_RATE:

        def split(d: Any) -> tuple[float, float]:
            ok = sum(c for v, c in zip(d.values, d.counts, strict=True) if v >= 0.5)
            return float(d.total), float(d.total - ok)

        (nc, ec), (ns, es) = split(obs.canary), split(obs.stable)
        return {**base, "nc": nc, "ec": ec, "ns": ns, "es": es}
    c = {_key(v): float(n) for v, n in zip(obs.canary.values, obs.canary.counts, strict=True) if n > 0}
    s = {_key(v): float(n) for v, n in zip(obs.stable.values, obs.stable.counts, strict=True) if n > 0}
    return {**base, "c": c, "s": s, "nc": sum(c.values()), "ns": sum(s.values())}


def _stable_only(stratum: Stratum) -> Stratum:
    """A warm-up interval's stratum: the stable's side only (the canary's is not judged)."""
    out = {**stratum, "warmup": True, "nc": 0.0}
    if "ec" in out:
        out["ec"] = 0.0
    if "c" in out:
        out["c"] = {}
    return out


def _key(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _bound(key: str) -> float:
    return math.inf if key == "+Inf" else float(key)


def _total(buckets: Mapping[str, float]) -> float:
    return float(sum(buckets.values()))


def _above(buckets: Mapping[str, float], bound: float) -> float:
    """Requests in buckets whose upper bound is above ``bound`` (i.e. slower than it)."""
    return float(sum(n for key, n in buckets.items() if _bound(key) > bound))


def _pool(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    pooled: dict[str, float] = {}
    for part in parts:
        for key, n in part.items():
            pooled[key] = pooled.get(key, 0.0) + n
    return pooled


def _bound_for(buckets: Mapping[str, float], q: float) -> float | None:
    """The finite bucket bound whose share of slower requests is nearest (log scale) to
    ``1 - q``; None without stable requests."""
    total = _total(buckets)
    if total <= 0:
        return None
    best, best_gap = None, math.inf
    for key in buckets:
        bound = _bound(key)
        if not math.isfinite(bound):
            continue
        share = _above(buckets, bound) / total
        if share <= 0:
            continue
        gap = abs(math.log(share / (1 - q)))
        if gap < best_gap:
            best, best_gap = bound, gap
    # a bound below every request (the first bucket) still has share 1: skip nothing else
    return best


def _certainly_above(events: float, n: float, share: float, alpha: float, phi: float) -> bool:
    """``events`` of ``n`` are certainly more than ``share`` (binomial test on counts deflated
    by the overdispersion ``phi``)."""
    if n <= 0 or events / n <= share:
        return False
    n_eff = max(round(n / phi), 1)
    k_eff = min(n_eff, round(events / phi))
    if k_eff <= 0:
        return False
    return binomtest(k_eff, n_eff, share, alternative="greater").pvalue < alpha


def _minutes_left(mine: list[Stratum], missing: float) -> int | None:
    seconds = sum(float(s.get("seconds") or 0) for s in mine)
    have = sum(s["nc"] for s in mine)
    if seconds <= 0 or have <= 0:
        return None
    return max(1, math.ceil(missing / (have / seconds) / 60))


def _bounded(strata: list[Stratum]) -> list[Stratum]:
    """At most ``MAX_STRATA`` strata (merging the oldest pairs of the same phase)."""
    while len(strata) > MAX_STRATA:
        first, second = strata[0], strata[1]
        if first["phase"] != second["phase"] or bool(first.get("warmup")) != bool(second.get("warmup")):
            strata = strata[1:]
            continue
        merged = dict(first)
        for key in ("nc", "ec", "ns", "es", "seconds"):
            if key in first:
                merged[key] = float(first.get(key) or 0) + float(second.get(key) or 0)
        for key in ("c", "s"):
            if key in first:
                merged[key] = _pool([first[key], second[key]])
        strata = [merged, *strata[2:]]
    return strata
