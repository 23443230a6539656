"""A change's rollout plan, chosen by its author: strategy, canary steps, analysis and manual gates.

`ChangeRequest.rollout_options` holds what the author set, any of::

    {"strategy": "canary",
     "steps": [10, 25, 50, 100],                       # or {"stepWeight": 20, "maxWeight": 60}
     "analysis": {"interval_seconds": 120, "failure_limit": 2, "judge": "mann-whitney",
                  "metrics": [{"kind": "success_rate", "min": 0.995},
                              {"kind": "custom", "name": "errors", "direction": "lower", "max": 5,
                               "query": 'sum(rate(app_errors_total{namespace="{namespace}"}[{interval}]))'}]},
     "gates": [1]}                                     # phase indexes a person confirms before they apply

`rollout_options_effective(change)` merges them over the engine's defaults (strategy by the items'
kinds, `strategies.DEFAULT_STEPS`, `DEFAULT_ANALYSIS`, no gate): what a rollout of the change starts
with. `change_set_rollout_options` validates strictly (every error names its field path, e.g.
`analysis.metrics[1].query`, as a `ValidationError`: a 400 in the API; webhooks are checked by the
engine's own `policies.rollout.webhooks.parse_webhooks`) and, because approvers approve the rollout
plan too, voids the approvals like an item edit does.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from integrations.prometheus import interval_seconds
from policies import analysis as pa
from policies import selectors
from policies.analysis import Target, TemplateError, render_template
from policies.analysis.metrics import LATENCY_P99, SUCCESS_RATE
from policies.choices import EDITABLE_CHANGE_STATES, ChangeAuditAction, DraftOperation, PolicyKind, RolloutStrategy
from policies.constants import (
    DEFAULT_ANALYSIS,
    ROLLOUT_OPTION_INT_LIMITS,
    ROLLOUT_OPTION_MAX_LATENCY_MS,
    ROLLOUT_OPTION_MAX_METRICS,
    ROLLOUT_OPTION_MAX_QUERY,
    ROLLOUT_OPTION_MAX_STEPS,
    ROLLOUT_OPTION_NUMBER_LIMITS,
    ROLLOUT_OPTION_WINDOW_SECONDS,
)
from policies.exceptions import PermissionDeniedError
from policies.models import ChangeItem, ChangeRequest
from policies.rollout import strategies, webhooks
from policies.services.changes import approvals_void, audit_change, back_to_review, lock_change, require_state

OPTION_KEYS = ("strategy", "steps", "analysis", "gates")
# Like an item: the author may change the plan until the rollout starts (approved/scheduled go back to review).
ROLLOUT_OPTIONS_EDITABLE_STATES = EDITABLE_CHANGE_STATES
JUDGES = ("sequential", "threshold", "mann-whitney")
PROVIDERS = ("prometheus", "meshsim")
DIRECTIONS = ("higher", "lower")
METRIC_KEYS = {
    "success_rate": ("kind", "name", "min", "guard_min"),
    "latency_p99": ("kind", "name", "max", "guard_max"),
    "custom": ("kind", "name", "query", "direction", "min", "max", "guard_min", "guard_max", "unit"),
}
ANALYSIS_KEYS = (
    *ROLLOUT_OPTION_INT_LIMITS,
    *ROLLOUT_OPTION_NUMBER_LIMITS,
    "judge",
    "provider",
    "window",
    "metrics",
    "webhooks",
)
_METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,62}$")


# --- reading ----------------------------------------------------------------------------------------------


def _items(change: ChangeRequest, items: Sequence[ChangeItem] | None) -> list[ChangeItem]:
    if items is not None:
        return list(items)
    return list(
        ChangeItem.objects.filter(change=change)
        .order_by("position", "pk")
        .only("kind", "namespace", "operation", "content")
    )


def default_analysis() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_ANALYSIS)


def rollout_options_effective(change: ChangeRequest, *, items: Sequence[ChangeItem] | None = None) -> dict[str, Any]:
    """The change's rollout options merged over the defaults: `{"strategy": str, "steps": [int, ...],
    "analysis": dict, "gates": [int, ...]}`, the keyword arguments `rollout_start` takes."""
    options = change.rollout_options or {}
    strategy = options.get("strategy") or strategies.default_strategy([item.kind for item in _items(change, items)])
    return {
        "strategy": strategy,
        "steps": strategies.normalize_steps(options.get("steps")),
        "analysis": {**default_analysis(), **copy.deepcopy(options.get("analysis") or {})},
        "gates": sorted(options.get("gates") or []),
    }


def rollout_phase_labels(*, strategy: str, steps: list[int], items: Sequence[ChangeItem]) -> list[str]:
    """The phases a rollout of these items is planned to have (their indexes are what `gates` name).
    When the strategy finds nothing to act on at start, the engine applies directly in one phase."""
    if strategy == RolloutStrategy.CANARY:
        return [f"canary {weight} %" for weight in steps[:-1]] + ["promote 100 %"]
    if strategy == RolloutStrategy.DRY_RUN:
        return ["dry run (shadow denials)", "enforce (403 rate)"]
    if strategy == RolloutStrategy.RAMP:
        return ["PERMISSIVE (no plaintext left?)", "STRICT"]
    if strategy == RolloutStrategy.WAVES:
        namespaces = sorted({item.namespace for item in items})
        return [f"wave {number}: {namespace}" for number, namespace in enumerate(namespaces, start=1)] or ["apply"]
    return ["apply"]


def strategy_fits(strategy: str, items: Sequence[ChangeItem]) -> str:
    """Why the strategy cannot act on these items ("" when it can), by the engine's own rules."""

    def has(kind: str, *, update_only: bool = False, check: Callable[[Any], Any] | None = None) -> bool:
        return any(
            item.kind == kind
            and item.content
            and (not update_only or item.operation == DraftOperation.UPDATE)
            and (check is None or check(item.content))
            for item in items
        )

    if strategy == RolloutStrategy.CANARY and not (
        has(PolicyKind.VIRTUAL_SERVICE, update_only=True) or has(PolicyKind.DESTINATION_RULE, update_only=True)
    ):
        return "canary shifts traffic for an update of a VirtualService or DestinationRule; this change has none"
    if strategy == RolloutStrategy.DRY_RUN and not has(PolicyKind.AUTHORIZATION_POLICY):
        return "dry_run needs an AuthorizationPolicy to apply; this change has none"
    if strategy == RolloutStrategy.RAMP and not has(
        PolicyKind.PEER_AUTHENTICATION,
        check=lambda content: ((content.get("spec") or {}).get("mtls") or {}).get("mode") == "STRICT",
    ):
        return "ramp moves a PeerAuthentication to STRICT; this change has none"
    return ""


# --- validating -------------------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, path: str, low: int, high: int, errors: _Errors) -> int | None:
    if not _is_number(value) or (isinstance(value, float) and not value.is_integer()):
        errors.add(path, f"a whole number from {low} to {high}, not {value!r}")
        return None
    if not low <= value <= high:
        errors.add(path, f"must be from {low} to {high}, not {value:g}")
        return None
    return int(value)


def _number(value: Any, path: str, low: float, high: float, errors: _Errors) -> float | int | None:
    if not _is_number(value):
        errors.add(path, f"a number from {low:g} to {high:g}, not {value!r}")
        return None
    if not low <= value <= high:
        errors.add(path, f"must be from {low:g} to {high:g}, not {value:g}")
        return None
    return value


def _choice(value: Any, path: str, allowed: Sequence[str], errors: _Errors) -> str | None:
    if value not in allowed:
        errors.add(path, f"one of {', '.join(allowed)}, not {value!r}")
        return None
    return value


def _clean_steps(value: Any, errors: _Errors) -> list[int] | dict[str, int] | None:
    if isinstance(value, dict):
        aliases = {"step_weight": "stepWeight", "max_weight": "maxWeight"}
        found: dict[str, Any] = {}
        for key, raw in value.items():
            name = aliases.get(key, key)
            if name not in ("stepWeight", "maxWeight"):
                errors.add(f"steps.{key}", "unknown: give stepWeight and optionally maxWeight")
            elif name in found:
                errors.add(f"steps.{key}", f"given twice ({name})")
            else:
                found[name] = raw
        if "stepWeight" not in found:
            errors.add("steps.stepWeight", "required: the weight added at each step, e.g. 20")
            return None
        step = _whole(found["stepWeight"], "steps.stepWeight", 1, 100, errors)
        top = _whole(found.get("maxWeight", 100), "steps.maxWeight", 1, 100, errors)
        if step is None or top is None:
            return None
        if top < step:
            errors.add("steps.maxWeight", f"must be at least stepWeight ({step}), not {top}")
            return None
        if len(range(step, top + 1, step)) + 1 > ROLLOUT_OPTION_MAX_STEPS:
            errors.add("steps.stepWeight", f"at most {ROLLOUT_OPTION_MAX_STEPS} steps: take a larger stepWeight")
            return None
        return {"stepWeight": step, "maxWeight": top}
    if not isinstance(value, list) or not value:
        errors.add(
            "steps",
            'a list of weights ending at 100, e.g. [5, 10, 25, 50, 100], or {"stepWeight": 20, "maxWeight": 60}',
        )
        return None
    if len(value) > ROLLOUT_OPTION_MAX_STEPS:
        errors.add("steps", f"at most {ROLLOUT_OPTION_MAX_STEPS} steps, not {len(value)}")
        return None
    count = len(errors.by_path)
    weights: list[int] = []
    for index, raw in enumerate(value):
        weight = _whole(raw, f"steps[{index}]", 1, 100, errors)
        if weight is None:
            continue
        if weights and weight <= weights[-1]:
            errors.add(f"steps[{index}]", f"weights must increase: {weight} comes after {weights[-1]}")
        weights.append(weight)
    if weights and len(weights) == len(value) and weights[-1] != 100:
        errors.add(f"steps[{len(value) - 1}]", f"the last step must be 100 (all traffic), not {weights[-1]}")
    return weights if len(errors.by_path) == count else None


def _clean_metric(spec: Any, path: str, judge: str, errors: _Errors) -> dict[str, Any] | None:
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict):
        errors.add(path, 'an object such as {"kind": "success_rate", "min": 0.99}')
        return None
    kind = spec.get("kind")
    if kind not in METRIC_KEYS:
        errors.add(f"{path}.kind", f"one of {', '.join(METRIC_KEYS)}, not {kind!r}")
        return None
    count = len(errors.by_path)
    allowed = METRIC_KEYS[kind]
    for key in spec:
        if key not in allowed:
            errors.add(f"{path}.{key}", f"not a setting of a {kind} metric (use {', '.join(allowed[1:])})")
    cleaned: dict[str, Any] = {"kind": kind}
    if "name" in spec or kind == "custom":
        name = spec.get("name")
        if name is None:
            errors.add(f"{path}.name", "required for a custom metric: up to 63 letters, digits, _ . : -")
        elif not isinstance(name, str) or not _METRIC_NAME.match(name):
            errors.add(f"{path}.name", f"up to 63 letters, digits, _ . : -, starting with a letter, not {name!r}")
        else:
            cleaned["name"] = name
    bounds = {"success_rate": (0, 1), "latency_p99": (0, ROLLOUT_OPTION_MAX_LATENCY_MS)}.get(kind)
    for key in ("min", "max", "guard_min", "guard_max"):
        if key not in allowed or key not in spec:
            continue
        value = spec[key]
        if value is None:
            if key.startswith("guard_"):
                cleaned[key] = None  # no guard rail
            continue
        if bounds is not None:
            number = _number(value, f"{path}.{key}", *bounds, errors)
            if number is not None and kind == "latency_p99" and number <= 0:
                errors.add(f"{path}.{key}", "milliseconds above 0")
                number = None
        else:
            number = value if _is_number(value) else None
            if number is None:
                errors.add(f"{path}.{key}", f"a number, not {value!r}")
        if number is not None:
            cleaned[key] = number
    for low, high in (("min", "max"), ("guard_min", "guard_max")):
        if cleaned.get(low) is not None and cleaned.get(high) is not None and cleaned[low] > cleaned[high]:
            errors.add(f"{path}.{low}", f"{low} {cleaned[low]:g} is above {high} {cleaned[high]:g}")
    if kind == "custom":
        _clean_custom(spec, path, judge, cleaned, errors)
    if len(errors.by_path) > count:
        return None
    return cleaned if _buildable(cleaned, path, errors) else None


def _clean_custom(spec: dict[str, Any], path: str, judge: str, cleaned: dict[str, Any], errors: _Errors) -> None:
    query = spec.get("query")
    if not isinstance(query, str) or not query.strip():
        errors.add(
            f"{path}.query",
            'required: a PromQL template, e.g. sum(rate(app_errors_total{namespace="{namespace}"}[{interval}]))',
        )
    elif len(query) > ROLLOUT_OPTION_MAX_QUERY:
        errors.add(f"{path}.query", f"at most {ROLLOUT_OPTION_MAX_QUERY} characters, not {len(query)}")
    else:
        try:
            render_template(query, Target("namespace", "service", version="v1"), interval="1m")
        except TemplateError as exc:
            errors.add(f"{path}.query", str(exc))
        else:
            cleaned["query"] = query
    direction = spec.get("direction")
    if direction is None:
        errors.add(f"{path}.direction", f"required: one of {', '.join(DIRECTIONS)} (which values are better)")
    elif _choice(direction, f"{path}.direction", DIRECTIONS, errors) is not None:
        cleaned["direction"] = direction
    if "unit" in spec:
        unit = spec["unit"]
        if not isinstance(unit, str) or len(unit) > 16:
            errors.add(f"{path}.unit", "a text of at most 16 characters, e.g. ms")
        else:
            cleaned["unit"] = unit
    if judge != "mann-whitney" and all(cleaned.get(key) is None for key in ("min", "max", "guard_min", "guard_max")):
        errors.add(path, "give min or max (or a guard): with the threshold judge a metric without bounds never fails")


def _buildable(cleaned: dict[str, Any], path: str, errors: _Errors) -> bool:
    """The analysis layer accepts the metric (as the engine will build it)."""
    spec = dict(cleaned)
    kind = spec.pop("kind")
    try:
        if kind == "success_rate":
            pa.success_rate(**spec)
        elif kind == "latency_p99":
            pa.latency_p99(**spec)
        else:
            pa.custom(spec.pop("name"), spec.pop("query"), direction=pa.Direction(spec.pop("direction")), **spec)
    except (TypeError, ValueError) as exc:
        errors.add(path, str(exc))
        return False
    return True


def _clean_analysis(value: Any, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        errors.add("analysis", 'an object, e.g. {"interval_seconds": 60, "failure_limit": 2}')
        return None
    cleaned: dict[str, Any] = {}
    for key, raw in value.items():
        path = f"analysis.{key}"
        if key not in ANALYSIS_KEYS:
            errors.add(path, f"unknown analysis setting (use {', '.join(ANALYSIS_KEYS)})")
            continue
        if raw is None:
            continue  # the default
        if key in ROLLOUT_OPTION_INT_LIMITS:
            number: float | str | None = _whole(raw, path, *ROLLOUT_OPTION_INT_LIMITS[key], errors)
        elif key in ROLLOUT_OPTION_NUMBER_LIMITS:
            number = _number(raw, path, *ROLLOUT_OPTION_NUMBER_LIMITS[key], errors)
        elif key == "judge":
            number = _choice(raw, path, JUDGES, errors)
        elif key == "provider":
            number = _choice(raw, path, PROVIDERS, errors)
        elif key == "window":
            number = None
            low, high = ROLLOUT_OPTION_WINDOW_SECONDS
            try:
                seconds = interval_seconds(raw) if isinstance(raw, str) else None
            except ValueError:
                seconds = None
            if seconds is None:
                errors.add(path, f"a PromQL duration such as 2m or 1m30s, not {raw!r}")
            elif not low <= seconds <= high:
                errors.add(path, f"from {low} s to {high} s, not {seconds:g} s")
            else:
                number = raw
        elif key == "webhooks":
            number = None
            try:
                webhooks.parse_webhooks(raw, path=path)
            except webhooks.WebhookConfigError as exc:
                errors.add(exc.path, str(exc).removeprefix(f"{exc.path}: "))
            else:
                number = raw
        else:
            continue  # metrics, below (they depend on the judge)
        if number is not None:
            cleaned[key] = number
    if value.get("metrics") is not None:
        metrics = value["metrics"]
        if not isinstance(metrics, list):
            errors.add("analysis.metrics", "a list of metrics (empty: request success rate and p99 latency)")
        elif len(metrics) > ROLLOUT_OPTION_MAX_METRICS:
            errors.add("analysis.metrics", f"at most {ROLLOUT_OPTION_MAX_METRICS} metrics, not {len(metrics)}")
        else:
            judge = cleaned.get("judge", "sequential")
            found: list[dict[str, Any]] = []
            names: dict[str, int] = {}
            for index, spec in enumerate(metrics):
                metric = _clean_metric(spec, f"analysis.metrics[{index}]", judge, errors)
                if metric is None:
                    continue
                name = metric.get("name") or _default_metric_name(metric["kind"])
                if name in names:
                    errors.add(
                        f"analysis.metrics[{index}].name",
                        f"{name!r} is already the name of metrics[{names[name]}]: names must differ",
                    )
                names.setdefault(name, index)
                found.append(metric)
            cleaned["metrics"] = found
    return cleaned


def _default_metric_name(kind: str) -> str:
    return {"success_rate": SUCCESS_RATE, "latency_p99": LATENCY_P99}.get(kind, kind)


def rollout_options_clean(
    *, change: ChangeRequest, options: Any, items: Sequence[ChangeItem] | None = None
) -> dict[str, Any]:
    """The options in their stored form, or a `ValidationError` whose keys are field paths."""
    errors = _Errors()
    if not isinstance(options, dict):
        raise ValidationError({"options": ["an object with any of strategy, steps, analysis, gates"]})
    items = _items(change, items)
    cleaned: dict[str, Any] = {}
    for key in options:
        if key not in OPTION_KEYS:
            errors.add(key, f"unknown rollout option (use {', '.join(OPTION_KEYS)})")
    strategy = options.get("strategy")
    if strategy is not None and _choice(strategy, "strategy", RolloutStrategy.values, errors) is not None:
        why = strategy_fits(strategy, items)
        if why:
            errors.add("strategy", why)
        else:
            cleaned["strategy"] = strategy
    effective_strategy = (
        strategy if strategy in RolloutStrategy.values else strategies.default_strategy([item.kind for item in items])
    )
    if options.get("steps") is not None:
        steps = _clean_steps(options["steps"], errors)
        if effective_strategy != RolloutStrategy.CANARY:
            errors.add("steps", f"only the canary strategy uses steps; this change rolls out with {effective_strategy}")
        elif steps is not None:
            cleaned["steps"] = steps
    if options.get("analysis") is not None:
        analysis = _clean_analysis(options["analysis"], errors)
        if analysis:
            cleaned["analysis"] = analysis
    if options.get("gates") is not None:
        gates = options["gates"]
        phases = rollout_phase_labels(
            strategy=effective_strategy, steps=strategies.normalize_steps(cleaned.get("steps")), items=items
        )
        if not isinstance(gates, list):
            errors.add("gates", "a list of phase indexes, e.g. [1] (0 is the first phase)")
        else:
            found: list[int] = []
            for index, raw in enumerate(gates):
                if not _is_number(raw) or (isinstance(raw, float) and not raw.is_integer()):
                    errors.add(f"gates[{index}]", f"a phase index (a whole number), not {raw!r}")
                    continue
                gate = int(raw)
                if not 0 <= gate < len(phases):
                    errors.add(
                        f"gates[{index}]",
                        f"phase {gate} does not exist: this plan has {len(phases)} "
                        f"phase{'s' if len(phases) != 1 else ''} "
                        f"(0 to {len(phases) - 1}: {', '.join(phases)})",
                    )
                    continue
                if gate in found:
                    errors.add(f"gates[{index}]", f"phase {gate} is listed twice")
                found.append(gate)
            if found:
                cleaned["gates"] = sorted(set(found))
    if errors:
        raise ValidationError(errors.by_path)
    return cleaned


# --- writing ----------------------------------------------------------------------------------------------


def user_may_set_rollout_options(*, user: User, change: ChangeRequest) -> bool:
    return user.is_authenticated and (user.pk == change.author_id or selectors.user_is_admin(user))


def change_set_rollout_options(*, actor: User, change: ChangeRequest, options: Any) -> ChangeRequest:
    """Replaces the change's rollout options (`{}` = every default). The author or a platform admin,
    while the change can be edited; a change to the plan voids every approval and sends an approved
    or scheduled change back to review, as an item edit does. Setting the same options is a no-op."""
    if not user_may_set_rollout_options(user=actor, change=change):
        raise PermissionDeniedError("only the author of a change (or an admin) can change its rollout plan")
    verb = "change the rollout plan of"
    require_state(change, ROLLOUT_OPTIONS_EDITABLE_STATES, verb)
    cleaned = rollout_options_clean(change=change, options=options)
    with transaction.atomic():
        change = lock_change(change)
        require_state(change, ROLLOUT_OPTIONS_EDITABLE_STATES, verb)
        before = change.rollout_options or {}
        if cleaned == before:
            return change
        change.rollout_options, change.updated_at = cleaned, timezone.now()
        change.save(update_fields=["rollout_options", "updated_at"])
        audit_change(
            action=ChangeAuditAction.CHANGE_ROLLOUT_OPTIONS_UPDATED,
            actor=actor,
            change=change,
            before={"rollout_options": before},
            after={"rollout_options": cleaned},
        )
        reason = f"the rollout plan was changed by {actor.get_username()} after this approval"
        approvals_void(change=change, reason=reason, actor=actor)
        back_to_review(change, actor=actor, reason=reason)
    return change
