"""API for a policy's per-environment promotion overrides (JSON merge patches kept with an environment).

- `GET /policies/{id}/overrides/`: the policy's overrides, one per environment holding one.
- `POST /policies/{id}/overrides/` `{"environment": "prod", "patch": {...}}`: add one (409 when that
  environment has one).
- `GET|PUT|DELETE /policies/{id}/overrides/{environment}/`: read, replace (`{"patch": {...}}`) or delete
  the override of one environment (404 when it has none).

Reading takes read access to the policy (404 otherwise); writing takes an approver or admin role in the
team owning the namespace in that environment, or a platform admin (403), and a token with `write`. A
patch that is not a JSON object, touches the object's identity, is too large, or whose result does
not validate in that environment is a 400 `invalid_override` naming the field (`details.findings`).
The rules are in `policies.services.promotion_overrides`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import selectors
from policies.api.drafts import ErrorSerializer
from policies.exceptions import NotFoundError
from policies.models import Environment, Policy
from policies.services.promotion_overrides import (
    promotion_override_create,
    promotion_override_delete,
    promotion_override_update,
)
from portal.http import signed_in_user


class OverrideSerializer(serializers.Serializer):
    environment = serializers.CharField(source="environment.name", read_only=True)
    identity = serializers.CharField(read_only=True, help_text="`Kind/namespace/name`, the key it is kept under.")
    patch = serializers.JSONField(read_only=True, help_text="The JSON merge patch (RFC 7386).")
    may_edit = serializers.BooleanField(read_only=True, help_text="Whether you may change or delete it.")


class OverrideCreateSerializer(serializers.Serializer):
    environment = serializers.SlugRelatedField(slug_field="name", queryset=Environment.objects.all())
    patch = serializers.JSONField(help_text="A JSON merge patch (an object; null removes a field).")


class OverrideUpdateSerializer(serializers.Serializer):
    patch = serializers.JSONField(help_text="A JSON merge patch (an object; null removes a field).")


ERRORS = {
    status.HTTP_401_UNAUTHORIZED: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    status.HTTP_404_NOT_FOUND: OpenApiResponse(
        ErrorSerializer, description="No such policy you may read, or override."
    ),
}
WRITE_ERRORS = {
    **ERRORS,
    status.HTTP_400_BAD_REQUEST: OpenApiResponse(ErrorSerializer, description="`invalid_override`, with the field."),
    status.HTTP_403_FORBIDDEN: OpenApiResponse(
        ErrorSerializer, description="Not an approver of the owning team there nor a platform admin, or no `write`."
    ),
    status.HTTP_409_CONFLICT: OpenApiResponse(ErrorSerializer, description="The environment already has one."),
}


def _policy(request: Request, pk: int) -> Policy:
    return get_object_or_404(selectors.policy_list(user=request.user), pk=pk)


def _environment(name: str) -> Environment:
    found = selectors.environment_by_name(name)
    if found is None:
        raise NotFoundError(f"there is no environment {name!r}")
    return found


def _one(request: Request, policy: Policy, environment: str) -> Any:
    for override in selectors.promotion_overrides(user=request.user, policy=policy):
        if override.environment.name == environment:
            return override
    return None


class PolicyOverridesView(APIView):
    @extend_schema(operation_id="policies_overrides_list", responses={200: OverrideSerializer(many=True), **ERRORS})
    def get(self, request: Request, pk: int) -> Response:
        """The policy's promotion overrides, in promotion order."""
        policy = _policy(request, pk)
        return Response(
            OverrideSerializer(selectors.promotion_overrides(user=request.user, policy=policy), many=True).data
        )

    @extend_schema(
        operation_id="policies_overrides_create",
        request=OverrideCreateSerializer,
        responses={201: OverrideSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Add the override of one environment."""
        policy = _policy(request, pk)
        params = OverrideCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        override = promotion_override_create(
            actor=signed_in_user(request),
            policy=policy,
            environment=params.validated_data["environment"],
            patch=params.validated_data["patch"],
        )
        return Response(OverrideSerializer(override).data, status=status.HTTP_201_CREATED)


class PolicyOverrideView(APIView):
    @extend_schema(operation_id="policies_overrides_retrieve", responses={200: OverrideSerializer, **ERRORS})
    def get(self, request: Request, pk: int, environment: str) -> Response:
        """The override of one environment."""
        policy = _policy(request, pk)
        override = _one(request, policy, environment)
        if override is None:
            raise NotFoundError(f"{environment} has no override for {selectors.override_identity(policy)}")
        return Response(OverrideSerializer(override).data)

    @extend_schema(
        operation_id="policies_overrides_update",
        request=OverrideUpdateSerializer,
        responses={200: OverrideSerializer, **WRITE_ERRORS},
    )
    def put(self, request: Request, pk: int, environment: str) -> Response:
        """Replace the override of one environment."""
        policy = _policy(request, pk)
        target = _environment(environment)
        params = OverrideUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        override = promotion_override_update(
            actor=signed_in_user(request), policy=policy, environment=target, patch=params.validated_data["patch"]
        )
        return Response(OverrideSerializer(override).data)

    @extend_schema(operation_id="policies_overrides_destroy", responses={204: None, **WRITE_ERRORS})
    def delete(self, request: Request, pk: int, environment: str) -> Response:
        """Delete the override of one environment."""
        policy = _policy(request, pk)
        target = _environment(environment)
        promotion_override_delete(actor=signed_in_user(request), policy=policy, environment=target)
        return Response(status=status.HTTP_204_NO_CONTENT)
