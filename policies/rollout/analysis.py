"""The engine's analysis interface: one callable evaluates one interval of one phase.

`Analyzer = Callable[[AnalysisContext], Outcome]`. The engine only needs the verdict (pass | fail |
inconclusive | no_data | error), a reason and the metrics it saw; the run-level policy it applies is
simple: `fail` and `error` count towards `failure_limit`, anything else passes the interval.

Which analyzer runs: the `analyzer=` given to `rollout_advance` (unit tests of the engine logic),
else the dotted path in `settings.MESHGATE_ROLLOUT_ANALYZER` or the `MESHGATE_ROLLOUT_ANALYZER`
environment variable, else `metrics_analyzer` (below: `policies.analysis.run_interval` over the environment's Prometheus,
or meshsim's own /metrics when the environment has no Prometheus URL).
The run-level rule is `decide` (`policies.analysis.decide`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.analysis import MetricDefinition, MetricsProvider, Target

PASS, FAIL, INCONCLUSIVE, NO_DATA, ERROR = "pass", "fail", "inconclusive", "no_data", "error"
FAILING_VERDICTS = frozenset({FAIL, ERROR})


@dataclass(frozen=True)
class AnalysisContext:
    rollout_id: int
    environment_id: int
    prometheus_url: str
    strategy: str
    phase: dict[str, Any]  # the phase's key, label, weight, canary flag and check (see strategies)
    interval_index: int
    interval_seconds: float
    config: dict[str, Any]  # the rollout's analysis config (metrics, thresholds, ...)
    workloads: list[dict[str, str]]  # [{"namespace", "service"}] the change routes to or selects
    # the labels scoping every metrics query to the environment's cluster
    # (e.g. {"destination_cluster": "staging"}); empty: unscoped
    cluster_labels: dict[str, str] = field(default_factory=dict)
    last_phase: bool = False  # the final phase (promote 100 %: the stable has no traffic left)
    phases_left: int | None = None  # phases after this one (None: unknown)


@dataclass(frozen=True)
class Outcome:
    verdict: str
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    metric: str = ""
    observed: Any = None
    threshold: Any = None
    evidence: dict[str, Any] | None = None  # the judges' carried state (None: unchanged)
    both_bad: bool = False  # stable breaches the guard rail as the canary does
    accumulating: bool = False  # warm-up / not enough traffic yet: evidence is gathering

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "metrics": self.metrics,
            "metric": self.metric,
            "observed": self.observed,
            "threshold": self.threshold,
            "both_bad": self.both_bad,
            "accumulating": self.accumulating,
        }


Analyzer = Callable[[AnalysisContext], Outcome]


def bake_only(context: AnalysisContext) -> Outcome:
    return Outcome(PASS, "no analysis layer installed: baked for the interval without metrics")


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def coerce(result: Any) -> Outcome:
    """An `Outcome`, or the analysis layer's `IntervalResult`-like object (verdict, reason, metrics...)."""
    if isinstance(result, Outcome):
        return result
    get = (
        (lambda k, d=None: result.get(k, d)) if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    )
    verdict = get("verdict", ERROR)
    verdict = getattr(verdict, "value", verdict)
    metrics = get("metrics", {}) or {}
    if not isinstance(metrics, dict):
        metrics = {"metrics": [getattr(m, "__dict__", str(m)) for m in metrics]}
    return Outcome(
        str(verdict),
        str(get("reason", "") or ""),
        metrics,
        str(get("metric", "") or ""),
        get("observed"),
        get("threshold"),
    )


def resolve_analyzer(explicit: Analyzer | None = None) -> Analyzer:
    if explicit is not None:
        return explicit
    from django.conf import settings

    path = getattr(settings, "MESHGATE_ROLLOUT_ANALYZER", "") or os.environ.get("MESHGATE_ROLLOUT_ANALYZER", "")
    if path:
        return _import(path)
    return metrics_analyzer


def evaluate(analyzer: Analyzer, context: AnalysisContext) -> Outcome:
    try:
        return coerce(analyzer(context))
    except Exception as exc:  # noqa: BLE001 - an analysis crash is an interval in error, not a crashed rollout
        return Outcome(ERROR, f"analysis raised {type(exc).__name__}: {exc}")


# --- the analysis layer (policies.analysis) at this interface ----------------------------------------


def _target(spec: dict[str, Any] | None, fallback: dict[str, str]) -> Target:
    from policies.analysis import Target

    spec = {**fallback, **(spec or {})}
    return Target(spec["namespace"], spec["service"], version=spec.get("version"), canary=spec.get("canary"))


def _metric_definitions(config: dict[str, Any]) -> list[MetricDefinition]:
    from policies.analysis import Direction, custom, latency_p99, success_rate

    specs = config.get("metrics") or [{"kind": "success_rate"}, {"kind": "latency_p99"}]
    found = []
    for spec in specs:
        spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
        kind = spec.pop("kind", "custom")
        if kind == "success_rate":
            found.append(success_rate(**{k: v for k, v in spec.items() if k in ("min", "guard_min", "name")}))
        elif kind == "latency_p99":
            found.append(latency_p99(**{k: v for k, v in spec.items() if k in ("max", "guard_max", "name")}))
        else:
            found.append(
                custom(
                    spec.pop("name"),
                    spec.pop("query"),
                    direction=Direction(spec.pop("direction", Direction.LOWER_IS_BETTER)),
                    **spec,
                )
            )
    return found


def _provider(context: AnalysisContext) -> MetricsProvider:
    scope = dict(context.cluster_labels or {})
    """`config.provider`: "prometheus" (default: the environment's Prometheus URL) or "meshsim" (the
    environment's simulated cluster's own /metrics; `meshsim_advance_seconds` advances its traffic
    clock instead of waiting, for demos and tests).

    Without an advance the meshsim provider keeps its scrapes across intervals (one history per
    process and cluster), so an interval's window reaches back to the previous interval's scrape
    and covers the time really elapsed. With an advance every interval measures exactly the
    traffic it advanced: a history of its own, bootstrapped by scrape, advance, scrape."""
    from integrations.prometheus import ScrapeHistory
    from policies.analysis import MeshsimProvider, PrometheusProvider

    config = context.config
    if config.get("provider") == "meshsim" or not context.prometheus_url:
        from policies.models import Environment

        url = Environment.objects.get(pk=context.environment_id).api_url
        advance = float(config.get("meshsim_advance_seconds") or 0)
        if advance:
            import requests

            def sleep(_seconds: float) -> None:
                requests.post(
                    f"{url.rstrip('/')}/meshsim/traffic/advance", json={"seconds": advance}, timeout=10
                ).raise_for_status()

            return MeshsimProvider(url, scope=scope, sleep=sleep, bootstrap_wait_s=1.0, history=ScrapeHistory())
        return MeshsimProvider(url, scope=scope)
    return PrometheusProvider(context.prometheus_url, scope=scope)


MAX_WORKLOADS = 5


JUDGES = ("sequential", "threshold", "mann-whitney")
DEFAULT_JUDGE = "sequential"
DEFAULT_WARMUP_INTERVALS = 1


def make_judge(config: dict[str, Any]) -> Any:
    """The judge `config.judge` names (default "sequential"), with its configured knobs."""
    from policies import analysis as pa
    from policies.analysis.sequential import SequentialJudge

    name = config.get("judge") or DEFAULT_JUDGE
    if name == "mann-whitney":
        return pa.MannWhitneyJudge()
    if name == "threshold":
        threshold = pa.ThresholdJudge()
        if config.get("min_requests"):
            threshold.min_requests = float(config["min_requests"])
        return threshold
    judge = SequentialJudge()
    if config.get("judge_alpha") is not None:
        judge.alpha = float(config["judge_alpha"])
    if config.get("min_requests") is not None:
        judge.min_requests = float(config["min_requests"])
    if config.get("judge_power_ratio") is not None:
        judge.power_ratio = float(config["judge_power_ratio"])
    if config.get("judge_power_wait_intervals") is not None:
        judge.power_wait_intervals = int(config["judge_power_wait_intervals"])
    return judge


def warmup_intervals(config: dict[str, Any]) -> int:
    value = config.get("warmup_intervals")
    return DEFAULT_WARMUP_INTERVALS if value is None else int(value)


def metrics_analyzer(context: AnalysisContext) -> Outcome:
    """One interval through `policies.analysis.run_interval`: the phase's canary and stable targets,
    the configured metrics (default request success rate >= 0.99 and p99 <= 500 ms), judged by
    `config.judge` (default "sequential": `policies.analysis.sequential.SequentialJudge`, which keeps
    the attempt's evidence in the judges' state this analyzer returns as `Outcome.evidence` and gets
    back in `config.state.judges`; "threshold"; "mann-whitney"). Every query is scoped to the
    environment's cluster (`context.cluster_labels`) and measures one interval that never reaches
    back before the phase was applied (`analysis_window`); the first `warmup_intervals` (default 1)
    intervals after each weight change are not judged. A phase with a `check` (dry-run, ramp) is
    also judged on its gate (`policies.analysis.gates`: shadow denials, 403 rate, plaintext left,
    plaintext refused) over the same window and provider; the worst verdict wins."""
    import time

    from integrations.prometheus import interval_seconds
    from policies import analysis as pa
    from policies.analysis import gates
    from policies.analysis.judges import Step

    check = context.phase.get("check") or ""
    gated = check in gates.CHECKS
    subjects = gates.subjects_of(context.phase.get("subjects"), context.workloads) if gated else []
    if not context.workloads and not context.phase.get("targets") and not subjects:
        return Outcome(NO_DATA, "no workload to analyse")
    provider = _provider(context)
    judge = make_judge(context.config)
    requested = context.config.get("window")
    elapsed = (context.interval_index + 1) * context.interval_seconds
    # a meshsim provider that advances the simulated clock measures exactly the traffic it advanced:
    # nothing earlier is in its windows, which need no cut
    own_clock = isinstance(provider, pa.MeshsimProvider) and not provider.shares_history
    if requested and (own_clock or interval_seconds(requested) <= elapsed):
        window = requested
    else:
        window = pa.analysis_window(
            judge,
            interval_s=max(context.interval_seconds, 1.0),
            elapsed_s=elapsed,
            requested_s=interval_seconds(requested) if requested else None,
        )
    step = Step(
        phase=str(context.phase.get("key", "")),
        warmup=context.interval_index < warmup_intervals(context.config),
        last=context.last_phase
        or (int(context.phase.get("weight") or 0) >= 100 and bool(context.phase.get("targets"))),
        at=time.time(),
        seconds=interval_seconds(window),
        before_last=context.phases_left == 1 and bool(context.phase.get("targets")),
    )
    saved = (context.config.get("state") or {}).get("judges") or {}
    evidence: dict[str, Any] = {}
    results: list[Any] = []
    targets = context.phase.get("targets") or {}
    # A phase with explicit targets (a canary) compares them; otherwise every workload the phase
    # touches is analysed (up to MAX_WORKLOADS), each named in its metrics when there are several.
    sides = [(context.workloads[0] if context.workloads else {})] if targets else context.workloads[:MAX_WORKLOADS]
    for fallback in sides:
        canary, stable = _target(targets.get("canary"), fallback), _target(targets.get("stable"), fallback)
        prefix = f"{fallback.get('namespace')}/{fallback.get('service')}|"
        definitions = _metric_definitions(context.config)
        states = {m.name: saved.get(prefix + m.name) or {} for m in definitions}
        found: list[Any] = list(
            pa.run_interval(
                provider=provider,
                metrics=definitions,
                canary=canary,
                stable=stable,
                window=window,
                judge=judge,
                states=states,
                step=step,
            ).metrics
        )
        evidence.update({prefix + m.metric: m.state for m in found})
        if len(sides) > 1:
            where = f"{fallback.get('namespace')}/{fallback.get('service')}"
            found = [
                dataclasses.replace(
                    m, metric=f"{m.metric} ({where})", reason=f"{where}: {m.reason}" if m.reason else m.reason
                )
                for m in found
            ]
        results += found
    if gated:
        results.append(
            gates.judge_gate(
                check,
                provider=provider,
                subjects=subjects,
                window=_gate_window(context, window, provider),
                config=context.config,
            )
        )
    result = pa.summarize(results, judge=judge.name, window=window)
    worst = next((m for m in result.metrics if m.verdict == result.verdict), None)
    metrics = {
        m.metric: {
            "verdict": str(m.verdict),
            "canary": m.canary,
            "stable": m.stable,
            "threshold": m.threshold,
            "threshold_min": m.threshold_min,
            "threshold_max": m.threshold_max,
            "reason": m.reason,
            "explain": explain(m.detail),
        }
        for m in result.metrics
    }
    return Outcome(
        str(result.verdict),
        result.reason,
        metrics,
        metric=worst.metric if worst else "",
        observed=worst.canary if worst else None,
        threshold=worst.threshold if worst else None,
        evidence=evidence,
        both_bad=result.both_bad,
        accumulating=result.accumulating,
    )


EXPLAIN_KEYS = (
    "method",
    "why",
    "n_canary",
    "n_stable",
    "n_canary_attempt",
    "n_stable_attempt",
    "minutes_left",
    "one_interval",
    "guard",
    "both_bad",
    "warmup",
    "last_step",
    "p_value",
    "effect",
    "alpha",
)


def explain(detail: dict[str, Any]) -> dict[str, Any]:
    """What a verdict rests on, for the page and the API: the method, samples on each side, the effect
    with its interval (per comparison), and why it passed, failed or waits."""
    found = {k: detail[k] for k in EXPLAIN_KEYS if detail.get(k) is not None}
    tests = detail.get("tests")
    if tests:
        found["tests"] = [
            {
                k: t.get(k)
                for k in (
                    "test",
                    "against",
                    "ratio",
                    "ratio_low",
                    "ratio_high",
                    "p_value",
                    "canary_rate",
                    "stable_rate",
                    "bound_ms",
                    "dispersion",
                )
            }
            for t in tests
        ]
    return found


def _gate_window(context: AnalysisContext, window: str, provider: Any) -> str:
    """A gate reads only what happened since its phase was applied (a shadow denial of an earlier
    attempt must not fail this one): on Prometheus the window is cut to the time the phase has been
    analysed, `(interval_index + 1) × interval_seconds`; so on the meshsim provider when it keeps
    its scrapes across intervals. With an advance the meshsim provider's windows start at its own
    first scrape of the interval anyway."""
    from integrations.prometheus import interval_seconds
    from policies.analysis import PrometheusProvider

    if not (isinstance(provider, PrometheusProvider) or getattr(provider, "shares_history", False)):
        return window
    since = (context.interval_index + 1) * context.interval_seconds
    return f"{max(int(min(interval_seconds(window), since)), 1)}s"


def decide(config: dict[str, Any], state: dict[str, Any] | None, outcome: Outcome) -> tuple[str, str, dict]:
    """The run-level rule of `policies.analysis.decide`: (action wait|advance|rollback|pause, reason, state).
    `failure_limit` failed intervals in total roll back, `intervals_per_step` passing ones in a row
    advance, `no_data_limit` no-data/error ones in a row (a provider outage never rolls back),
    `inconclusive_limit` undecided ones, `both_bad_limit` ones where stable is as bad as the canary or
    `accumulate_limit` ones still gathering evidence in a row pause for a person. The returned state
    carries the judges' evidence (`judges`) to the next interval."""
    from policies.analysis import AnalysisPolicy, AnalysisState, IntervalResult, Verdict
    from policies.analysis import decide as run_level

    defaults = AnalysisPolicy()
    policy = AnalysisPolicy(
        failure_limit=int(config.get("failure_limit") or defaults.failure_limit),
        required_successes=int(config.get("intervals_per_step") or defaults.required_successes),
        no_data_limit=int(config.get("no_data_limit") or defaults.no_data_limit),
        inconclusive_limit=int(config.get("inconclusive_limit") or defaults.inconclusive_limit),
        both_bad_limit=int(config.get("both_bad_limit") or defaults.both_bad_limit),
        accumulate_limit=int(config.get("accumulate_limit") or defaults.accumulate_limit),
    )
    verdict = Verdict(outcome.verdict) if outcome.verdict in Verdict.__members__.values() else Verdict.ERROR
    result = IntervalResult(
        verdict, outcome.reason, both_bad=bool(outcome.both_bad), accumulating=bool(outcome.accumulating)
    )
    decision = run_level(policy, AnalysisState.from_dict(state), result)
    judges = outcome.evidence if outcome.evidence is not None else (state or {}).get("judges") or {}
    return str(decision.action), decision.reason, {**decision.state.to_dict(), "judges": judges}
