"""API for rollouts: read their state (weight, step, reason, analysis intervals, timeline) and
control them. Each control (`pause`, `resume`, `continue-on-live`, `abort`, `promote`, `confirm-gate`) is one small
endpoint calling one service; an illegal transition answers 409 `rollout_illegal_state` with the
rollout's state in `details.state`; only approvers and admins of the owning teams may control (403).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import django_filters
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from policies.api.changes import EmptySerializer
from policies.api.drafts import ErrorSerializer
from policies.choices import RolloutState, RolloutStrategy
from policies.models import Rollout
from policies.rollout import selectors as rollout_selectors
from policies.services import rollouts as rollout_services
from portal.http import signed_in_user

_F = TypeVar("_F", bound=Callable[..., Any])

# --- output -------------------------------------------------------------------------------------------------


class RolloutSerializer(serializers.ModelSerializer):
    change = serializers.IntegerField(source="change_id", read_only=True)
    change_title = serializers.CharField(source="change.title", read_only=True)
    environment = serializers.CharField(source="environment.name", read_only=True)
    state = serializers.CharField(read_only=True, help_text=", ".join(RolloutState.values))
    step = serializers.SerializerMethodField(help_text="The phase being executed, 1-based.")
    steps_total = serializers.SerializerMethodField(help_text="The number of planned phases.")

    class Meta:
        model = Rollout
        fields = [
            "id",
            "change",
            "change_title",
            "environment",
            "strategy",
            "state",
            "current_weight",
            "step",
            "steps_total",
            "pause_reason",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_step(self, rollout: Rollout) -> int:
        return rollout.step_index + 1

    def get_steps_total(self, rollout: Rollout) -> int:
        return len(rollout.phases or [])


class RolloutPhaseSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.label
    weight = serializers.IntegerField(allow_null=True)
    gate = serializers.BooleanField()
    status = serializers.CharField(
        help_text="done | current | pending; on a stopped rollout failed (or aborted) at the step it stopped at, "
        "not_reached after it."
    )
    verdict = serializers.CharField(allow_blank=True, help_text="The last analysis verdict of the phase.")


class MetricValuesSerializer(serializers.Serializer):
    verdict = serializers.CharField(allow_blank=True)
    canary = serializers.FloatField(allow_null=True)
    stable = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True, help_text="The threshold line: the bound when there is one.")
    threshold_min = serializers.FloatField(allow_null=True, help_text="Lowest acceptable value (none: unbounded).")
    threshold_max = serializers.FloatField(allow_null=True, help_text="Highest acceptable value (none: unbounded).")
    threshold_text = serializers.CharField(allow_blank=True, help_text='As a person reads it, e.g. ">= 0.95".')
    reason = serializers.CharField(allow_blank=True, required=False, help_text="The metric's verdict in one line.")
    explain = serializers.JSONField(
        required=False,
        help_text="What the verdict rests on: method, why (warm-up, not enough traffic, guard rail, "
        "significant regression, no regression, both versions breach the guard rail), "
        "n_canary / n_stable (this step) and n_*_attempt, minutes_left, one_interval (waits: "
        "certain only with the canary's worst interval), guard, and tests: "
        "[{test, against, ratio, ratio_low, ratio_high, p_value, canary_rate, stable_rate, "
        "bound_ms, dispersion}].",
    )
    explanation = serializers.CharField(allow_blank=True, required=False, help_text="`explain` as one sentence.")


class AnalysisRunSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    phase = serializers.CharField(allow_blank=True, help_text="Index of the phase.")
    interval = serializers.IntegerField(allow_null=True, help_text="1-based interval within the phase.")
    verdict = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    decision = serializers.CharField(allow_blank=True)
    metrics = serializers.DictField(child=MetricValuesSerializer(), help_text="{metric: values}.")


class RolloutEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    message = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]  # a declared field, not Serializer.data


class RolloutDetailSerializer(RolloutSerializer):
    rollback_reason = serializers.JSONField(
        allow_null=True, help_text="{summary, metric, observed, threshold, interval, error, left_out_of_band...}."
    )
    error = serializers.CharField(allow_blank=True)
    phases = RolloutPhaseSerializer(many=True, source="phase_rows")
    analysis_runs = AnalysisRunSerializer(many=True, source="run_rows")
    events = RolloutEventSerializer(many=True, source="event_rows")

    class Meta(RolloutSerializer.Meta):
        fields = [*RolloutSerializer.Meta.fields, "rollback_reason", "error", "phases", "analysis_runs", "events"]
        read_only_fields = fields


def detail_response(rollout: Rollout, code: int = status.HTTP_200_OK) -> Response:
    events = list(rollout.events.all())
    runs = rollout_selectors.rollout_analysis_runs(events=events)
    rollout.event_rows, rollout.run_rows = events, runs  # type: ignore[attr-defined]  # rows the serializer reads
    rollout.phase_rows = rollout_selectors.rollout_steps(rollout=rollout, runs=runs)  # type: ignore[attr-defined]  # the same
    return Response(RolloutDetailSerializer(rollout).data, status=code)


# --- list and retrieve -------------------------------------------------------------------------------------


class RolloutFilterSet(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=RolloutState.choices)
    environment = django_filters.CharFilter(field_name="environment__name", help_text="Environment name.")
    change = django_filters.NumberFilter(
        field_name="change_id", help_text="Change request id.", min_value=1, max_value=2**63 - 1
    )
    strategy = django_filters.ChoiceFilter(choices=RolloutStrategy.choices)

    class Meta:
        model = Rollout
        fields = ["state", "environment", "change", "strategy"]


class RolloutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    """Rollouts of changes you can read (active ones first)."""

    lookup_value_regex = "[0-9]+"  # any other id is a 404, never a 500

    filterset_class = RolloutFilterSet

    def get_queryset(self) -> QuerySet[Rollout]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: nobody is signed in
            return Rollout.objects.none()
        return rollout_selectors.rollout_list(user=signed_in_user(self.request))

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return RolloutDetailSerializer if self.action == "retrieve" else RolloutSerializer

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return detail_response(self.get_object())


# --- controls ----------------------------------------------------------------------------------------------


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


ERRORS = {
    status.HTTP_400_BAD_REQUEST: OpenApiResponse(ErrorSerializer, description="Invalid input."),
    status.HTTP_401_UNAUTHORIZED: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    status.HTTP_403_FORBIDDEN: OpenApiResponse(
        ErrorSerializer, description="Not an approver or admin of the owning teams, or a read-only token."
    ),
    status.HTTP_404_NOT_FOUND: OpenApiResponse(ErrorSerializer, description="No such rollout you may read."),
    status.HTTP_409_CONFLICT: OpenApiResponse(
        ErrorSerializer, description="Illegal in the rollout's state (`rollout_illegal_state`, `details.state`)."
    ),
}


def _control_schema(operation_id: str, request_serializer: Any, summary: str) -> Callable[[_F], _F]:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        request=request_serializer,
        responses={status.HTTP_200_OK: RolloutDetailSerializer, **ERRORS},
    )


class RolloutControlView(APIView):
    """One control of one rollout: parse input, call one service, answer the rollout."""

    input_serializer: type[serializers.Serializer] = EmptySerializer

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        raise NotImplementedError

    def post(self, request: Request, pk: int) -> Response:
        rollout = get_object_or_404(rollout_selectors.rollout_list(user=signed_in_user(request)), pk=pk)
        params = self.input_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        self.act(request, rollout, params.validated_data)
        return detail_response(rollout_selectors.rollout_list(user=signed_in_user(request)).get(pk=pk))


class RolloutPauseView(RolloutControlView):
    input_serializer = ReasonSerializer

    @_control_schema("rollouts_pause", ReasonSerializer, "Pause (pending, running or waiting for a gate).")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        return rollout_services.rollout_pause(actor=signed_in_user(request), rollout=rollout, reason=data["reason"])


class RolloutResumeView(RolloutControlView):
    @_control_schema("rollouts_resume", EmptySerializer, "Resume a paused rollout.")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        return rollout_services.rollout_resume(actor=signed_in_user(request), rollout=rollout)


class RolloutContinueOnLiveView(RolloutControlView):
    @_control_schema(
        "rollouts_continue_on_live",
        EmptySerializer,
        "Continue a rollout paused by another writer's edit on top of the edited live object.",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        return rollout_services.rollout_continue_on_live(actor=signed_in_user(request), rollout=rollout)


class RolloutAbortView(RolloutControlView):
    input_serializer = ReasonSerializer

    @_control_schema("rollouts_abort", ReasonSerializer, "Abort: restore the snapshot; the change ends aborted.")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        return rollout_services.rollout_abort(actor=signed_in_user(request), rollout=rollout, reason=data["reason"])


class RolloutPromoteView(RolloutControlView):
    @_control_schema("rollouts_promote", EmptySerializer, "Promote now: skip the remaining steps to 100 %.")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        return rollout_services.rollout_promote_now(actor=signed_in_user(request), rollout=rollout)


class RolloutConfirmGateView(RolloutControlView):
    @_control_schema("rollouts_confirm_gate", EmptySerializer, "Confirm the manual gate the rollout waits at.")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, rollout: Rollout, data: dict[str, Any]) -> Rollout:
        return rollout_services.rollout_confirm_gate(actor=signed_in_user(request), rollout=rollout)
