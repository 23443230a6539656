"""Reads of rollouts shared by the rollout pages and the API."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Case, Exists, IntegerField, OuterRef, QuerySet, Value, When

from policies.choices import RolloutEventKind, RolloutState
from policies.models import ChangeItem, NamespaceOwnership, Rollout, RolloutEvent
from policies.selectors import sees_everything


def rollout_list(*, user: User) -> QuerySet[Rollout]:
    """Rollouts whose change touches a namespace one of the user's teams owns (everything for
    superusers and security-team members); active ones first, newest first."""
    rollouts = (
        Rollout.objects.select_related("change", "environment")
        .annotate(
            active_rank=Case(
                When(state__in=list(RolloutState.active()), then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            ),
        )
        .order_by("active_rank", "-pk")
    )
    if not user.is_authenticated:
        return rollouts.none()
    if sees_everything(user):
        return rollouts
    owners = NamespaceOwnership.objects.filter(
        environment=OuterRef("change__environment"), namespace=OuterRef("namespace"), team__memberships__user=user
    )
    touched = ChangeItem.objects.filter(change=OuterRef("change")).filter(Exists(owners))
    return rollouts.filter(Exists(touched))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_BOUND = re.compile(r"^\s*(>=|<=|>|<)\s*(\S+)\s*$")
_RANGE = re.compile(r"^\s*\[\s*([^,\s]+)\s*,\s*([^\]\s]+)\s*\]\s*$")


def threshold_bounds(values: dict[str, Any]) -> dict[str, Any]:
    """A metric's threshold as numbers and as text: {threshold, threshold_min, threshold_max,
    threshold_text}. The analysis records the bounds (`threshold_min` / `threshold_max`) beside the
    text (">= 0.95", "<= 500", "[0.1, 0.9]"); intervals recorded with the text only are read from
    it, and a bare number is a threshold without a direction. `threshold` is the one line a chart
    draws (the bound when there is exactly one)."""
    raw = values.get("threshold")
    low, high = _number(values.get("threshold_min")), _number(values.get("threshold_max"))
    line = _number(raw)
    if low is None and high is None and isinstance(raw, str) and line is None:
        if found := _BOUND.match(raw):
            bound = _number(found.group(2))
            low, high = (bound, None) if found.group(1).startswith(">") else (None, bound)
        elif found := _RANGE.match(raw):
            low, high = _number(found.group(1)), _number(found.group(2))
    if line is None:
        line = low if high is None else high if low is None else None
    text = raw if isinstance(raw, str) else "" if raw is None else f"{raw:g}" if isinstance(raw, float) else str(raw)
    return {"threshold": line, "threshold_min": low, "threshold_max": high, "threshold_text": text}


WHY_TEXT = {
    "warm-up": "warm-up after the weight change: not judged",
    "not enough traffic": "not enough traffic yet",
    "no canary data": "no canary request judged yet",
    "guard rail": "failed: the canary breaches the guard rail",
    "significant regression": "failed: the canary is worse than stable",
    "no regression": "passed: no regression",
    "both versions breach the guard rail": "both versions are bad: the canary is not blamed",
    "suspicious": "waits: the canary looks worse, gathering more evidence",
    "not enough evidence yet": "waits: a doubling is not ruled out yet before the last step",
}


def explanation(explain: dict[str, Any]) -> str:
    """One line a person reads: the method, the samples on each side, each comparison's effect with its
    always-valid interval, and why the metric passed, failed or waits."""
    if not explain:
        return ""
    parts = []
    why = explain.get("why")
    if why:
        text = WHY_TEXT.get(why, why)
        if why == "not enough traffic" and explain.get("minutes_left"):
            text += f", about {explain['minutes_left']} more minutes at this rate"
        if why == "suspicious" and explain.get("one_interval"):
            text += " (certain only with its worst interval: one interval alone is not a regression yet)"
        parts.append(text)
    if explain.get("method"):
        parts.append(str(explain["method"]))
    if explain.get("n_canary") is not None:
        parts.append(
            f"samples canary {_count(explain.get('n_canary'))} / stable {_count(explain.get('n_stable'))}"
            + (
                f" this step (attempt: {_count(explain.get('n_canary_attempt'))} / "
                f"{_count(explain.get('n_stable_attempt'))})"
                if explain.get("n_canary_attempt") is not None
                else ""
            )
        )
    for test in explain.get("tests") or []:
        high = test.get("ratio_high")
        high_text = "∞" if high is None or high > 1e6 else f"{high:.2f}"
        against = "baseline before the shift" if test.get("against") == "baseline" else "stable"
        parts.append(
            f"{test.get('test')} vs {against}: ×{(test.get('ratio') or 0):.2f} "
            f"[{(test.get('ratio_low') or 0):.2f}, {high_text}], p={(test.get('p_value') or 0):.2g}"
        )
    if explain.get("guard"):
        parts.append(f"guard: {explain['guard']}")
    return "; ".join(parts)


def _count(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:g}"


def rollout_analysis_runs(*, events: Iterable[RolloutEvent]) -> list[dict[str, Any]]:
    """The analysis intervals recorded in the timeline: [{at, phase, verdict, reason, metrics:
    {name: {verdict, canary, stable, threshold, threshold_min, threshold_max, threshold_text}}}],
    oldest first (`threshold_bounds`)."""
    runs = []
    for event in events:
        if event.kind != RolloutEventKind.ANALYSIS:
            continue
        data = event.data or {}
        metrics = {}
        for name, values in (data.get("metrics") or {}).items():
            values = values if isinstance(values, dict) else {"canary": values}
            metrics[name] = {
                "verdict": values.get("verdict", ""),
                "canary": _number(values.get("canary")),
                "stable": _number(values.get("stable")),
                **threshold_bounds(values),
                "reason": values.get("reason") or "",
                "explain": values.get("explain") or {},
                "explanation": explanation(values.get("explain") or {}),
            }
        phase, interval = ((event.step_key or "").split(":") + ["", "", ""])[1:3]  # analyze:<phase>:<run>
        runs.append(
            {
                "at": event.at.isoformat(),
                "phase": phase,
                "interval": int(interval) + 1 if interval.isdigit() else None,
                "verdict": data.get("verdict", ""),
                "reason": data.get("reason", ""),
                "decision": data.get("decision", ""),
                "metrics": metrics,
            }
        )
    return runs


def rollout_weights(*, rollout: Rollout, events: Iterable[RolloutEvent]) -> list[dict[str, Any]]:
    """The traffic weight over time: each applied phase's weight at the time it was applied."""
    points = [{"at": (rollout.started_at or rollout.created_at).isoformat(), "weight": 0}]
    for event in events:
        if event.kind == RolloutEventKind.APPLY and "weight" in (event.data or {}):
            points.append({"at": event.at.isoformat(), "weight": event.data["weight"]})
        elif event.kind in (RolloutEventKind.ROLLBACK, RolloutEventKind.ABORTED) and event.step_key == "rollback":
            points.append({"at": event.at.isoformat(), "weight": 0})
    return points


STEP_STATUS_LABELS = {
    "done": "done",
    "current": "current",
    "pending": "pending",
    "failed": "failed",
    "aborted": "aborted",
    "not_reached": "not reached",
}
# the state a rollout ended in (or is ending in) -> the status of the step it stopped at
_STOPPED_AT: dict[str, str] = {
    RolloutState.ROLLED_BACK: "failed",
    RolloutState.FAILED: "failed",
    RolloutState.ABORTED: "aborted",
}


def rollout_steps(*, rollout: Rollout, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned phases with their status and the last analysis verdict of each. Status: done,
    current, pending; on a rollout that stopped (rolling back, rolled back, failed, aborted) the
    step it stopped at is failed (aborted) and the steps after it are not_reached."""
    verdicts: dict[str, str] = {}
    for run in runs:
        verdicts[run["phase"]] = run["verdict"]
    finished = rollout.state == RolloutState.COMPLETED
    state = rollout.state
    if state == RolloutState.ROLLING_BACK:  # ends rolled back, or aborted when a person asked for it
        state = (rollout.rollback_reason or {}).get("final_state") or RolloutState.ROLLED_BACK
    stopped = _STOPPED_AT.get(state)
    steps = []
    for index, phase in enumerate(rollout.phases or []):
        if finished or index < rollout.step_index:
            status = "done"
        elif stopped is not None:
            status = stopped if index == rollout.step_index else "not_reached"
        elif index == rollout.step_index and rollout.is_active:
            status = "current"
        else:
            status = "pending"
        steps.append(
            {
                "index": index + 1,
                "key": phase.get("key", ""),
                "label": phase.get("label", ""),
                "weight": phase.get("weight"),
                "gate": bool(phase.get("gate")),
                "status": status,
                "status_label": STEP_STATUS_LABELS[status],
                "verdict": verdicts.get(str(index), ""),
            }
        )
    return steps
