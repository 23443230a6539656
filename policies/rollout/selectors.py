"""Reads of rollouts shared by the rollout pages and the API."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Case, Exists, IntegerField, OuterRef, QuerySet, Value, When

from policies.models import ChangeItem, NamespaceOwnership, Rollout
from policies.rollout.choices import RolloutEventKind, RolloutState
from policies.selectors import sees_everything


def rollout_list(*, user: AbstractBaseUser) -> QuerySet[Rollout]:
    """Rollouts whose change touches a namespace one of the user's teams owns (everything for
    superusers and security-team members); active ones first, newest first."""
    rollouts = Rollout.objects.select_related("change", "environment").annotate(
        active_rank=Case(When(state__in=list(RolloutState.active()), then=Value(0)), default=Value(1),
                         output_field=IntegerField()),
    ).order_by("active_rank", "-pk")
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
        return float(value)
    except (TypeError, ValueError):
        return None


def rollout_analysis_runs(*, events) -> list[dict[str, Any]]:
    """The analysis intervals recorded in the timeline: [{at, phase, verdict, reason, metrics:
    {name: {verdict, canary, stable, threshold}}}], oldest first."""
    runs = []
    for event in events:
        if event.kind != RolloutEventKind.ANALYSIS:
            continue
        data = event.data or {}
        metrics = {}
        for name, values in (data.get("metrics") or {}).items():
            values = values if isinstance(values, dict) else {"canary": values}
            metrics[name] = {"verdict": values.get("verdict", ""), "canary": _number(values.get("canary")),
                             "stable": _number(values.get("stable")), "threshold": _number(values.get("threshold"))}
        phase, interval = ((event.step_key or "").split(":") + ["", "", ""])[1:3]  # analyze:<phase>:<run>
        runs.append({"at": event.at.isoformat(), "phase": phase,
                     "interval": int(interval) + 1 if interval.isdigit() else None,
                     "verdict": data.get("verdict", ""), "reason": data.get("reason", ""),
                     "decision": data.get("decision", ""), "metrics": metrics})
    return runs


def rollout_weights(*, rollout: Rollout, events) -> list[dict[str, Any]]:
    """The traffic weight over time: each applied phase's weight at the time it was applied."""
    points = [{"at": (rollout.started_at or rollout.created_at).isoformat(), "weight": 0}]
    for event in events:
        if event.kind == RolloutEventKind.APPLY and "weight" in (event.data or {}):
            points.append({"at": event.at.isoformat(), "weight": event.data["weight"]})
        elif event.kind in (RolloutEventKind.ROLLBACK, RolloutEventKind.ABORTED) and event.step_key == "rollback":
            points.append({"at": event.at.isoformat(), "weight": 0})
    return points


def rollout_steps(*, rollout: Rollout, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned phases with their status and the last analysis verdict of each."""
    verdicts: dict[str, str] = {}
    for run in runs:
        verdicts[run["phase"]] = run["verdict"]
    finished = rollout.state == RolloutState.COMPLETED
    steps = []
    for index, phase in enumerate(rollout.phases or []):
        if finished or index < rollout.step_index:
            status = "done"
        elif index == rollout.step_index and rollout.is_active:
            status = "current"
        else:
            status = "pending"
        steps.append({"index": index + 1, "key": phase.get("key", ""), "label": phase.get("label", ""),
                      "weight": phase.get("weight"), "gate": bool(phase.get("gate")),
                      "status": status, "verdict": verdicts.get(str(index), "")})
    return steps
