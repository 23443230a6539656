"""Canary analysis: metrics, providers, judges, one interval, and the run-level rule.

The rollout engine calls, per analysis interval::

    result = run_interval(
        provider=PrometheusProvider(env.prometheus_url), metrics=[success_rate(), latency_p99()],
        canary=Target(ns, svc, version="v2"), stable=Target(ns, svc, version="v1"),
        window=analysis_window(judge, interval_s=30, elapsed_s=since_step_start),
        judge=judge, states=previous.states,
    )
    decision = decide(AnalysisPolicy(...), AnalysisState.from_dict(saved), result)

and stores ``result.to_dict()``, ``result.states`` and ``decision.state.to_dict()``.
Dry-run and ramp phases add their gate (``gates.judge_gate(phase["check"], ...)``: shadow
denials, 403 rate, plaintext requests, refused plaintext), summed up with the metrics by
``summarize``.
"""

from policies.analysis.interval import (
    IntervalResult,
    MetricResult,
    Verdict,
    analysis_window,
    run_interval,
    summarize,
)
from policies.analysis.judges import (
    Distribution,
    FailureLimitJudge,
    Judge,
    JudgeVerdict,
    MannWhitneyJudge,
    Observation,
    Outcome,
    ThresholdJudge,
)
from policies.analysis.metrics import (
    Direction,
    MetricDefinition,
    MetricKind,
    Target,
    TemplateError,
    ThresholdRange,
    custom,
    latency_p99,
    render_template,
    success_rate,
)
from policies.analysis.policy import Action, AnalysisPolicy, AnalysisState, Decision, decide
from policies.analysis.providers import (
    MeshsimProvider,
    MetricSample,
    MetricsProvider,
    PrometheusProvider,
    ProviderError,
    ProviderQueryError,
    ProviderUnavailable,
)

__all__ = [
    "Action",
    "AnalysisPolicy",
    "AnalysisState",
    "Decision",
    "Direction",
    "Distribution",
    "FailureLimitJudge",
    "IntervalResult",
    "Judge",
    "JudgeVerdict",
    "MannWhitneyJudge",
    "MeshsimProvider",
    "MetricDefinition",
    "MetricKind",
    "MetricResult",
    "MetricSample",
    "MetricsProvider",
    "Observation",
    "Outcome",
    "PrometheusProvider",
    "ProviderError",
    "ProviderQueryError",
    "ProviderUnavailable",
    "Target",
    "TemplateError",
    "ThresholdJudge",
    "ThresholdRange",
    "Verdict",
    "analysis_window",
    "custom",
    "decide",
    "latency_p99",
    "render_template",
    "run_interval",
    "success_rate",
    "summarize",
]
