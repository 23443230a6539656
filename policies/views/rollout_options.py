"""The "Rollout plan" panel of the change page: the effective strategy, steps, analysis and gates,
and the author's form to change them (`policies.services.rollout_options` validates and saves;
the view that receives the form is `policies.views.changes.change_rollout_options`).

The form shows the common settings as fields and the metrics as a JSON list; settings it does not
show (set through the API, e.g. `provider`) are kept when it is saved. An error of the service names
a field path (`analysis.metrics[1].query`); it is shown next to the field that holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from policies import analysis as pa
from policies.choices import RolloutStrategy
from policies.models import ChangeItem, ChangeRequest
from policies.rollout import strategies
from policies.services import rollout_options as services
from policies.services.plans import ROLLOUT_OWNS_LIVE_STATES

# analysis settings the form shows as fields; the engine's defaults when the options leave them out
ANALYSIS_FIELDS = (
    "interval_seconds",
    "intervals_per_step",
    "failure_limit",
    "no_data_limit",
    "inconclusive_limit",
    "judge",
    "window",
)
_POLICY = pa.AnalysisPolicy()
ENGINE_DEFAULTS = {
    "intervals_per_step": _POLICY.required_successes,
    "failure_limit": _POLICY.failure_limit,
    "no_data_limit": _POLICY.no_data_limit,
    "inconclusive_limit": _POLICY.inconclusive_limit,
    "both_bad_limit": _POLICY.both_bad_limit,
    "judge": "sequential",
}
_SEPARATORS = re.compile(r"[\s,]+")


class RolloutOptionsForm(forms.Form):
    strategy = forms.ChoiceField(required=False, label="Strategy")
    steps = forms.CharField(
        required=False,
        label="Canary steps (%)",
        help_text='Weights ending at 100, e.g. 10, 25, 50, 100; or {"stepWeight": 20}.',
    )
    interval_seconds = forms.IntegerField(required=False, label="Analysis interval (s)")
    intervals_per_step = forms.IntegerField(required=False, label="Passing intervals per step")
    failure_limit = forms.IntegerField(required=False, label="Failed intervals before rollback")
    no_data_limit = forms.IntegerField(required=False, label="No-data intervals before pausing")
    inconclusive_limit = forms.IntegerField(required=False, label="Undecided intervals before pausing")
    judge = forms.ChoiceField(
        required=False,
        label="Judge",
        choices=[
            ("", "Default (sequential)"),
            ("sequential", "Sequential against stable (always-valid p-values)"),
            ("threshold", "Threshold"),
            ("mann-whitney", "Mann-Whitney against stable, per interval"),
        ],
    )
    window = forms.CharField(
        required=False,
        label="Window",
        help_text="A PromQL duration, e.g. 2m; default the interval (never before the phase began).",
    )
    metrics = forms.CharField(
        required=False,
        label="Metrics (JSON)",
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text='Empty: success rate ≥ 0.99 and p99 ≤ 500 ms. E.g. [{"kind": "success_rate", "min": 0.995}, '
        '{"kind": "latency_p99", "max": 300}, {"kind": "custom", "name": "errors", "direction": "lower", '
        '"max": 5, "query": "sum(rate(app_errors_total{namespace=\\"{namespace}\\"}[{interval}]))"}]',
    )
    gates = forms.CharField(
        required=False,
        label="Manual gates",
        help_text="Phase numbers a person confirms before they apply, e.g. 1, 3 (0 is the first).",
    )

    def __init__(self, *args: Any, default_strategy: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        label = RolloutStrategy(default_strategy).label
        assert isinstance(self.fields["strategy"], forms.ChoiceField)
        self.fields["strategy"].choices = [("", f"Default for these kinds: {label}"), *RolloutStrategy.choices]

    @classmethod
    def initial_from(cls, options: dict[str, Any]) -> dict[str, Any]:
        analysis = options.get("analysis") or {}
        steps = options.get("steps")
        initial = {key: analysis[key] for key in ANALYSIS_FIELDS if key in analysis}
        initial.update(
            {
                "strategy": options.get("strategy", ""),
                "steps": ", ".join(str(w) for w in steps)
                if isinstance(steps, list)
                else json.dumps(steps)
                if steps
                else "",
                "metrics": json.dumps(analysis["metrics"], indent=2) if analysis.get("metrics") else "",
                "gates": ", ".join(str(g) for g in options.get("gates") or []),
            }
        )
        return initial

    def _numbers(self, name: str) -> list[int] | None:
        text = self.cleaned_data.get(name, "").strip()
        if not text:
            return None
        try:
            return [int(token) for token in _SEPARATORS.split(text) if token]
        except ValueError:
            self.add_error(name, "whole numbers separated by commas, e.g. 10, 25, 50, 100")
            return None

    def options(self, stored: dict[str, Any]) -> dict[str, Any] | None:
        """The options this form describes (keeping the stored analysis settings it does not show), or
        None with the form's errors set."""
        data = self.cleaned_data
        options: dict[str, Any] = {}
        if data.get("strategy"):
            options["strategy"] = data["strategy"]
        steps_text = data.get("steps", "").strip()
        if steps_text.startswith("{"):
            try:
                options["steps"] = json.loads(steps_text)
            except json.JSONDecodeError as exc:
                self.add_error("steps", f"not valid JSON: {exc.msg} (column {exc.colno})")
        elif steps_text:
            steps = self._numbers("steps")
            if steps is not None:
                options["steps"] = steps
        gates = self._numbers("gates")
        if gates is not None:
            options["gates"] = gates
        analysis = {
            key: value
            for key, value in (stored.get("analysis") or {}).items()
            if key not in (*ANALYSIS_FIELDS, "metrics")
        }
        for key in ANALYSIS_FIELDS:
            if data.get(key) not in (None, ""):
                analysis[key] = data[key]
        metrics_text = data.get("metrics", "").strip()
        if metrics_text:
            try:
                analysis["metrics"] = json.loads(metrics_text)
            except json.JSONDecodeError as exc:
                self.add_error("metrics", f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
        if analysis:
            options["analysis"] = analysis
        return None if self.errors else options

    def add_service_errors(self, error: ValidationError) -> None:
        """Each error of the service next to the field holding its path."""
        for path, messages_ in error.message_dict.items():
            field, prefix = self._field_of(path)
            for message in messages_:
                self.add_error(field, f"{prefix}: {message}" if prefix else message)

    def _field_of(self, path: str) -> tuple[str | None, str]:
        if path.startswith("analysis.metrics"):
            return "metrics", "" if path == "analysis.metrics" else path.removeprefix("analysis.")
        if path.startswith("analysis."):
            key = path.removeprefix("analysis.")
            return (key, "") if key in ANALYSIS_FIELDS else (None, path)
        for name in ("strategy", "steps", "gates"):
            if path == name:
                return name, ""
            if path.startswith((f"{name}.", f"{name}[")):
                return name, path
        return None, path


@dataclass
class MetricView:
    name: str
    kind: str
    threshold: str
    guard: str
    unit: str
    query: str


def _metric_views(specs: list[Any]) -> list[MetricView]:
    found = []
    for spec in specs or ["success_rate", "latency_p99"]:
        spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
        kind = spec.pop("kind", "custom")
        try:
            if kind == "success_rate":
                definition = pa.success_rate(**spec)
            elif kind == "latency_p99":
                definition = pa.latency_p99(**spec)
            else:
                definition = pa.custom(
                    spec.pop("name"), spec.pop("query"), direction=pa.Direction(spec.pop("direction")), **spec
                )
        except (KeyError, TypeError, ValueError):
            continue  # stored before a rule changed: the API shows it as stored
        guard = str(definition.guard)
        found.append(
            MetricView(
                definition.name,
                str(definition.kind),
                str(definition.threshold),
                "" if guard == "any" else guard,
                definition.unit,
                definition.query or "",
            )
        )
    return found


def rollout_plan_context(
    *, change: ChangeRequest, items: list[ChangeItem], may_edit: bool, form: RolloutOptionsForm | None = None
) -> dict[str, Any]:
    """What the panel shows; `may_edit`: the user may set the options now."""
    options = change.rollout_options or {}
    effective = services.rollout_options_effective(change, items=items)
    analysis = effective["analysis"]
    default_strategy = strategies.default_strategy([item.kind for item in items])
    phases = services.rollout_phase_labels(strategy=effective["strategy"], steps=effective["steps"], items=items)
    gates = set(effective["gates"])
    editable = may_edit and change.state in services.ROLLOUT_OPTIONS_EDITABLE_STATES
    if editable and form is None:
        form = RolloutOptionsForm(initial=RolloutOptionsForm.initial_from(options), default_strategy=default_strategy)
    interval = analysis.get("interval_seconds")
    return {
        "rollout_plan": {
            "custom": bool(options),
            "set": set(options) | {f"analysis.{key}" for key in options.get("analysis") or {}},
            "strategy": effective["strategy"],
            "strategy_label": RolloutStrategy(effective["strategy"]).label,
            "steps": effective["steps"] if effective["strategy"] == RolloutStrategy.CANARY else [],
            "phases": [(index, label, index in gates) for index, label in enumerate(phases)],
            "interval_seconds": interval,
            "window": analysis.get("window") or f"{int(interval or 0)}s",
            "intervals_per_step": analysis.get("intervals_per_step") or ENGINE_DEFAULTS["intervals_per_step"],
            "failure_limit": analysis.get("failure_limit") or ENGINE_DEFAULTS["failure_limit"],
            "both_bad_limit": analysis.get("both_bad_limit") or ENGINE_DEFAULTS["both_bad_limit"],
            "no_data_limit": analysis.get("no_data_limit") or ENGINE_DEFAULTS["no_data_limit"],
            "inconclusive_limit": analysis.get("inconclusive_limit") or ENGINE_DEFAULTS["inconclusive_limit"],
            "judge": analysis.get("judge") or ENGINE_DEFAULTS["judge"],
            "provider": analysis.get("provider") or "",
            "metrics": _metric_views(analysis.get("metrics") or []),
            "editable": editable,
            "started": change.state in ROLLOUT_OWNS_LIVE_STATES,
            "form": form,
            "open": form is not None and bool(form.errors),
        }
    }
