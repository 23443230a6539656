"""API of a change's rollout plan: `GET/POST /api/v1/changes/{id}/rollout-options/`.

The body of a POST replaces the change's options (`{}` restores every default); it is validated by
`policies.services.rollout_options` only, so every error names its field path
(`details["analysis.metrics[1].query"]`). The serializers here describe the shapes for OpenAPI.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import selectors
from policies.api.drafts import ErrorSerializer
from policies.choices import RolloutStrategy
from policies.constants import ROLLOUT_OPTION_INT_LIMITS
from policies.models import ChangeItem, ChangeRequest
from policies.services import rollout_options as services
from policies.services.rollout_options import DIRECTIONS, JUDGES, METRIC_KEYS, PROVIDERS
from portal.http import signed_in_user
from portal.parsers import SafeJSONParser


# A pattern, not an enum: an enum named "kind" would collide with the policy kinds' in the schema.
@extend_schema_field(
    {"type": "string", "pattern": f"^({'|'.join(METRIC_KEYS)})$", "description": f"One of {', '.join(METRIC_KEYS)}."}
)
class MetricKindField(serializers.CharField):
    pass


class RolloutMetricOptionSerializer(serializers.Serializer):
    kind = MetricKindField()
    name = serializers.CharField(required=False, help_text="Required for a custom metric; unique in the list.")
    min = serializers.FloatField(required=False, allow_null=True, help_text="Fails below (success rate: 0 to 1).")
    max = serializers.FloatField(required=False, allow_null=True, help_text="Fails above (p99: milliseconds).")
    guard_min = serializers.FloatField(required=False, allow_null=True, help_text="Fails at once below.")
    guard_max = serializers.FloatField(required=False, allow_null=True, help_text="Fails at once above.")
    query = serializers.CharField(
        required=False,
        help_text="Custom: a PromQL template; {namespace}, {service}, {version}, {canary} inside quoted label values, "
        '{interval} outside, e.g. sum(rate(app_errors_total{namespace="{namespace}"}[{interval}])).',
    )
    direction = serializers.ChoiceField(
        choices=list(DIRECTIONS), required=False, help_text="Custom: which values are better."
    )
    unit = serializers.CharField(required=False, max_length=16)


class RolloutAnalysisOptionsSerializer(serializers.Serializer):
    interval_seconds = serializers.IntegerField(
        required=False,
        min_value=ROLLOUT_OPTION_INT_LIMITS["interval_seconds"][0],
        max_value=ROLLOUT_OPTION_INT_LIMITS["interval_seconds"][1],
    )
    intervals_per_step = serializers.IntegerField(
        required=False, min_value=1, help_text="Passing intervals in a row to advance."
    )
    failure_limit = serializers.IntegerField(required=False, min_value=1, help_text="Failed intervals that roll back.")
    no_data_limit = serializers.IntegerField(
        required=False, min_value=1, help_text="No-data intervals in a row that pause."
    )
    inconclusive_limit = serializers.IntegerField(required=False, min_value=1)
    judge = serializers.ChoiceField(
        choices=list(JUDGES),
        required=False,
        help_text="sequential (default: evidence accumulated over the attempt, "
        "always-valid p-values), threshold or mann-whitney.",
    )
    warmup_intervals = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=100,
        help_text="Intervals after each weight change not judged (default 1).",
    )
    both_bad_limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Intervals in a row with stable as bad as the canary before pausing (default 10).",
    )
    accumulate_limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Intervals in a row gathering evidence (low traffic) before pausing (default 120).",
    )
    judge_alpha = serializers.FloatField(
        required=False,
        min_value=1e-9,
        max_value=0.5,
        help_text="Sequential judge: false rollback per attempt (default 0.01).",
    )
    judge_power_ratio = serializers.FloatField(
        required=False,
        min_value=1.01,
        max_value=100,
        help_text="Sequential judge: the error ratio (canary / stable) the step before the last rules out "
        "before passing (default 1.3; the share above the stable's p99: x2).",
    )
    judge_power_wait_intervals = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=1_000,
        help_text="Sequential judge: judged intervals the step before the last may wait to rule it out (default 20; "
        "0: never wait).",
    )
    min_requests = serializers.FloatField(
        required=False,
        min_value=1,
        help_text="Judged canary requests a step needs to pass (default 100; threshold judge: 20).",
    )
    provider = serializers.ChoiceField(choices=list(PROVIDERS), required=False)
    window = serializers.CharField(required=False, help_text="A PromQL duration, e.g. 2m; default the interval.")
    metrics = RolloutMetricOptionSerializer(
        many=True, required=False, help_text="Empty: request success rate >= 0.99 and p99 <= 500 ms."
    )
    meshsim_advance_seconds = serializers.FloatField(required=False, min_value=0)
    max_shadow_denials = serializers.FloatField(required=False, min_value=0)
    max_forbidden_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
    max_plaintext_requests = serializers.FloatField(required=False, min_value=0)
    max_refused_plaintext = serializers.FloatField(required=False, min_value=0)
    webhooks = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Rollout webhooks: name, phase, url, timeout_seconds, gate, metadata.",
    )
    webhook_attempts = serializers.IntegerField(
        required=False, min_value=1, max_value=100, help_text="Gating webhook failures in a row before pausing."
    )


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 100},
                "description": "Increasing canary weights ending at 100.",
            },
            {
                "type": "object",
                "description": "Every stepWeight up to maxWeight (default 100), then 100.",
                "properties": {
                    "stepWeight": {"type": "integer", "minimum": 1, "maximum": 100},
                    "maxWeight": {"type": "integer", "minimum": 1, "maximum": 100},
                },
                "required": ["stepWeight"],
                "additionalProperties": False,
            },
        ],
    }
)
class StepsField(serializers.JSONField):
    pass


class RolloutOptionsSerializer(serializers.Serializer):
    strategy = serializers.ChoiceField(
        choices=RolloutStrategy.choices, required=False, allow_null=True, help_text="Default: by the items' kinds."
    )
    steps = StepsField(required=False, allow_null=True, help_text="Canary only. Default [5, 10, 25, 50, 100].")
    analysis = RolloutAnalysisOptionsSerializer(required=False, allow_null=True)
    gates = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        required=False,
        allow_null=True,
        help_text="Indexes of the phases a person confirms before they apply.",
    )


class RolloutPlanSerializer(serializers.Serializer):
    """The effective plan: the options over the defaults, what a rollout starts with."""

    strategy = serializers.ChoiceField(choices=RolloutStrategy.choices)
    steps = serializers.ListField(child=serializers.IntegerField())
    analysis = serializers.DictField(help_text="interval_seconds, intervals_per_step, failure_limit, metrics, ...")
    gates = serializers.ListField(child=serializers.IntegerField())
    phases = serializers.ListField(child=serializers.CharField(), help_text="The planned phases; gates index them.")


@extend_schema_field(RolloutOptionsSerializer)
class RolloutOptionsField(serializers.JSONField):
    """The stored options as they are (only what the author set)."""


class RolloutOptionsStateSerializer(serializers.Serializer):
    options = RolloutOptionsField(help_text="What the author set.")
    plan = RolloutPlanSerializer()


def rollout_plan(change: ChangeRequest, items: list[ChangeItem] | None = None) -> dict[str, Any]:
    effective = services.rollout_options_effective(change, items=items)
    items = items if items is not None else list(change.items.all())
    return {
        **effective,
        "phases": services.rollout_phase_labels(strategy=effective["strategy"], steps=effective["steps"], items=items),
    }


def _state(change: ChangeRequest) -> dict[str, Any]:
    return {"options": change.rollout_options or {}, "plan": rollout_plan(change)}


class ChangeRolloutOptionsView(APIView):
    """The author's rollout plan of a change, and the effective plan (options over the defaults)."""

    parser_classes = [SafeJSONParser]

    def change(self, request: Request, pk: int) -> ChangeRequest:
        return get_object_or_404(selectors.change_list(user=request.user), pk=pk)

    @extend_schema(
        operation_id="changes_rollout_options",
        responses={
            status.HTTP_200_OK: RolloutOptionsStateSerializer,
            status.HTTP_404_NOT_FOUND: OpenApiResponse(ErrorSerializer, description="No such change you may read."),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(RolloutOptionsStateSerializer(_state(self.change(request, pk))).data)

    @extend_schema(
        operation_id="changes_rollout_options_set",
        request=RolloutOptionsSerializer,
        summary="Replace the rollout plan (author or admin; voids the approvals; `{}` restores the defaults).",
        responses={
            status.HTTP_200_OK: RolloutOptionsStateSerializer,
            status.HTTP_400_BAD_REQUEST: OpenApiResponse(
                ErrorSerializer,
                description="Invalid options: `details` maps field paths (e.g. "
                "`analysis.metrics[1].query`) to messages.",
            ),
            status.HTTP_403_FORBIDDEN: OpenApiResponse(ErrorSerializer, description="Not the author or an admin."),
            status.HTTP_404_NOT_FOUND: OpenApiResponse(ErrorSerializer, description="No such change you may read."),
            status.HTTP_409_CONFLICT: OpenApiResponse(
                ErrorSerializer, description="The rollout started or the change is closed (`details.state`)."
            ),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        change = services.change_set_rollout_options(
            actor=signed_in_user(request), change=self.change(request, pk), options=request.data
        )
        return Response(RolloutOptionsStateSerializer(_state(change)).data)
