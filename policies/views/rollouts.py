"""Rollout pages (namespace "rollouts"): the list, the live rollout page, its polled partial and chart
data, and the controls (pause, resume, continue on live, abort, promote now, confirm gate), each calling one service."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from policies.choices import RolloutState
from policies.exceptions import ApplicationError, PermissionDeniedError
from policies.models import Rollout
from policies.rollout import selectors as rollout_selectors
from policies.services import rollouts as rollout_services
from portal.http import signed_in_user

ROLLOUT_PAGE_SIZE = 100
CONTROLS = {
    "pause": (
        lambda user, rollout, reason: rollout_services.rollout_pause(actor=user, rollout=rollout, reason=reason),
        "Rollout paused.",
    ),
    "resume": (
        lambda user, rollout, reason: rollout_services.rollout_resume(actor=user, rollout=rollout),
        "Rollout resumed.",
    ),
    "continue-on-live": (
        lambda user, rollout, reason: rollout_services.rollout_continue_on_live(actor=user, rollout=rollout),
        "Continuing on the live object as the other writer left it.",
    ),
    "abort": (
        lambda user, rollout, reason: rollout_services.rollout_abort(actor=user, rollout=rollout, reason=reason),
        "Rollout aborted: the snapshot is being restored.",
    ),
    "promote": (
        lambda user, rollout, reason: rollout_services.rollout_promote_now(actor=user, rollout=rollout),
        "Promoting to 100 %.",
    ),
    "confirm-gate": (
        lambda user, rollout, reason: rollout_services.rollout_confirm_gate(actor=user, rollout=rollout),
        "Gate confirmed.",
    ),
}


def _rollout(request: HttpRequest, pk: int) -> Rollout:
    return get_object_or_404(rollout_selectors.rollout_list(user=signed_in_user(request)), pk=pk)


def _context(request: HttpRequest, rollout: Rollout) -> dict:
    events = list(rollout.events.all())
    runs = rollout_selectors.rollout_analysis_runs(events=events)
    may_control = rollout_services.user_may_control(user=signed_in_user(request), rollout=rollout)
    return {
        "rollout": rollout,
        "events": events,
        "runs": runs,
        "steps": rollout_selectors.rollout_steps(rollout=rollout, runs=runs),
        "may_control": may_control,
        "controls": _allowed_controls(rollout) if may_control else set(),
    }


def _allowed_controls(rollout: Rollout) -> set[str]:
    """The buttons worth showing in the rollout's state (the services check again)."""
    state = rollout.state
    allowed = set()
    if state in (RolloutState.PENDING, RolloutState.RUNNING, RolloutState.WAITING_GATE):
        allowed.add("pause")
    if state == RolloutState.PAUSED:
        allowed.add("resume")
        if (rollout.analysis or {}).get("out_of_band"):
            allowed.add("continue-on-live")
    if rollout.is_active and state != RolloutState.ROLLING_BACK:
        allowed.add("abort")
    if state in (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.WAITING_GATE) and rollout.phases:
        allowed.add("promote")
    if state == RolloutState.WAITING_GATE:
        allowed.add("confirm-gate")
    return allowed


@login_required
@require_GET
def rollout_list(request: HttpRequest) -> HttpResponse:
    rollouts = rollout_selectors.rollout_list(user=signed_in_user(request))[:ROLLOUT_PAGE_SIZE]
    return render(request, "rollouts/list.html", {"rollouts": rollouts})


@login_required
@require_GET
def rollout_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rollout = _rollout(request, pk)
    return render(request, "rollouts/detail.html", _context(request, rollout))


@login_required
@require_GET
def rollout_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled partial: reason, header, steps, controls and timeline (and, out of band, the analysis
    table). When the rollout is finished the partial comes without its polling trigger: polling stops."""
    rollout = _rollout(request, pk)
    return render(request, "rollouts/_status_poll.html", _context(request, rollout))


@login_required
@require_GET
def rollout_data(request: HttpRequest, pk: int) -> JsonResponse:
    """Chart data: weights over time and the analysis intervals (canary, stable, threshold per metric)."""
    rollout = _rollout(request, pk)
    events = list(rollout.events.all())
    runs = rollout_selectors.rollout_analysis_runs(events=events)
    return JsonResponse(
        {
            "id": rollout.pk,
            "state": rollout.state,
            "active": rollout.is_active,
            "current_weight": rollout.current_weight,
            "step": rollout.step_index + 1,
            "steps": len(rollout.phases or []),
            "weights": rollout_selectors.rollout_weights(rollout=rollout, events=events),
            "analysis_runs": runs,
        }
    )


@login_required
@require_POST
def rollout_control(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    rollout = _rollout(request, pk)
    if action not in CONTROLS:
        return HttpResponse("unknown action", status=404)
    call, success = CONTROLS[action]
    try:
        call(request.user, rollout, request.POST.get("reason", "").strip()[:500])
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return render(request, "rollouts/detail.html", _context(request, _rollout(request, pk)), status=exc.status)
    messages.success(request, success)
    return redirect("rollouts:detail", pk=rollout.pk)
