"""API for a policy's drift: what changed outside Meshgate, and the two ways out of it.

- `GET /policies/{id}/drift/`: the live object against the last revision Meshgate applied (404
  when the policy has no drift).
- `POST /policies/{id}/drift/adopt/`: the caller's draft for the policy becomes the live object
  (a deletion draft when it is gone); answers the draft.
- `POST /policies/{id}/drift/reapply/`: a change (state draft) that puts the applied revision
  back, based on the current revision; answers the change. Submit it with `/changes/{id}/submit/`.

Both actions take authors, approvers and admins of the team owning the namespace (403 otherwise),
answer 409 `no_drift` when the drift is gone, and accept an `Idempotency-Key` header. The rules
are in `policies.services.drift`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import selectors
from policies.api.changes import ChangeDetailSerializer, detail_response
from policies.api.drafts import (
    IDEMPOTENCY_PARAMETER,
    DiffSerializer,
    DraftDetailSerializer,
    ErrorSerializer,
    idempotent,
)
from policies.api.serializers import ContentField, DriftSummarySerializer
from policies.models import Draft, Policy, PolicyDrift
from policies.services.drift import drift_adopt, drift_reapply
from portal.http import signed_in_user


class DriftDiffSerializer(DiffSerializer):
    unified = serializers.CharField(help_text="The YAML diff in unified format (applied revision → live).")


class DriftDetailSerializer(DriftSummarySerializer):
    policy = serializers.IntegerField(source="policy_id", read_only=True)
    applied_revision = serializers.SerializerMethodField(help_text="The last revision Meshgate rolled out.")
    live_content = ContentField(
        read_only=True, allow_null=True, help_text="The live object, normalized; null when it is gone."
    )
    diff = serializers.SerializerMethodField(help_text="The applied revision against the live object.")
    open_changes = serializers.SerializerMethodField(help_text="Ids of open changes touching the policy.")

    class Meta(DriftSummarySerializer.Meta):
        fields = [
            "policy",
            *DriftSummarySerializer.Meta.fields,
            "applied_revision",
            "live_content",
            "diff",
            "open_changes",
        ]
        read_only_fields = fields

    def get_applied_revision(self, drift: PolicyDrift) -> int:
        return self.context["state"].applied.number

    @extend_schema_field(DriftDiffSerializer())
    def get_diff(self, drift: PolicyDrift) -> dict[str, Any]:
        state: selectors.DriftState = self.context["state"]
        return {
            **state.diff.as_dict(),
            "unified": state.diff.unified(old_label=f"revision #{state.applied.number}", new_label="live"),
        }

    def get_open_changes(self, drift: PolicyDrift) -> list[int]:
        return [change.pk for change in self.context["state"].open_changes]


ERRORS = {
    status.HTTP_401_UNAUTHORIZED: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    status.HTTP_404_NOT_FOUND: OpenApiResponse(ErrorSerializer, description="No such policy you may read."),
}
ACTION_ERRORS = {
    **ERRORS,
    status.HTTP_403_FORBIDDEN: OpenApiResponse(
        ErrorSerializer, description="No role in the team owning the namespace, or the token lacks `write`."
    ),
    status.HTTP_409_CONFLICT: OpenApiResponse(
        ErrorSerializer, description="`no_drift`: the drift is gone; or you already have a draft for the policy."
    ),
    status.HTTP_422_UNPROCESSABLE_ENTITY: OpenApiResponse(ErrorSerializer, description="Idempotency key reused."),
}


def _policy(request: Request, pk: int) -> Policy:
    return get_object_or_404(selectors.policy_list(user=request.user), pk=pk)


class PolicyDriftView(APIView):
    @extend_schema(
        operation_id="policies_drift_retrieve", responses={status.HTTP_200_OK: DriftDetailSerializer, **ERRORS}
    )
    def get(self, request: Request, pk: int) -> Response:
        """The policy's drift: the live object against the last revision Meshgate applied."""
        policy = _policy(request, pk)
        state = selectors.policy_drift(policy=policy)
        if state is None:
            raise NotFound(f"{policy.kind} {policy.namespace}/{policy.name} has no drift")
        return Response(DriftDetailSerializer(state.drift, context={"state": state}).data)


class PolicyDriftAdoptView(APIView):
    @extend_schema(
        operation_id="policies_drift_adopt",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={status.HTTP_201_CREATED: DraftDetailSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Adopt the live object as your draft for the policy (your existing draft is updated)."""
        policy = _policy(request, pk)

        def produce() -> Response:
            draft = drift_adopt(actor=signed_in_user(request), policy=policy)
            draft = Draft.objects.select_related(
                "environment", "policy__current_revision", "base_revision", "author"
            ).get(pk=draft.pk)
            context = {"request": request, "diff": selectors.draft_diff(draft=draft)}
            return Response(DraftDetailSerializer(draft, context=context).data, status=status.HTTP_201_CREATED)

        return idempotent(request, {}, produce)


class PolicyDriftReapplyView(APIView):
    @extend_schema(
        operation_id="policies_drift_reapply",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={status.HTTP_201_CREATED: ChangeDetailSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Create a change (state draft) that puts the last applied revision back; submit it for review."""
        policy = _policy(request, pk)

        def produce() -> Response:
            change = drift_reapply(actor=signed_in_user(request), policy=policy)
            return detail_response(request, change, status.HTTP_201_CREATED)

        return idempotent(request, {}, produce)
