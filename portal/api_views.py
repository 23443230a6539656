"""API endpoints about the caller: who am I, and my API tokens.

Tokens are managed only from a signed-in session: a leaked token must not be able to mint,
list or revoke tokens. The plaintext is returned once, in the answer to its creation.
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies.models import Membership
from portal.choices import TokenScope
from portal.http import signed_in_user
from portal.models import ApiToken
from portal.permissions import TokenScopePermission
from portal.selectors import token_list
from portal.services import token_create, token_revoke

DEFAULT_TOKEN_DAYS = min(30, settings.MESHGATE_API_TOKEN_MAX_DAYS)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes `portal.authentication.TokenAuthentication` in the OpenAPI document."""

    target_class = "portal.authentication.TokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "mgt_<key id>_<secret>",
            "description": "An API token created from a signed-in session (`/api/v1/tokens/`).",
        }


class SessionRequired(permissions.BasePermission):
    message = "API tokens cannot manage tokens: sign in to the portal to list, create or revoke them"
    code = "session_required"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return not isinstance(request.auth, ApiToken)


# --- serializers --------------------------------------------------------------------------


class ScopesField(serializers.ListField):
    child = serializers.ChoiceField(choices=TokenScope.choices)


class TokenSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:token-detail", lookup_field="key_id")
    scopes = ScopesField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["url", "key_id", "name", "scopes", "enabled", "expires_at", "created_at", "last_used_at"]
        read_only_fields = fields


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.SerializerMethodField(
        help_text="The token itself. Shown in this answer only and stored nowhere: keep it now."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, token: ApiToken) -> str:
        return self.context["plaintext"]


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=ApiToken._meta.get_field("name").max_length)
    scopes = ScopesField(allow_empty=False, help_text="`read`, `write` (implies read), or both.")
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=settings.MESHGATE_API_TOKEN_MAX_DAYS, default=DEFAULT_TOKEN_DAYS
    )


class CallerTokenSerializer(serializers.ModelSerializer):
    scopes = ScopesField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["key_id", "name", "scopes", "expires_at"]
        read_only_fields = fields


class CallerTeamSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(source="team.slug", read_only=True)
    name = serializers.CharField(source="team.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["slug", "name", "role"]
        read_only_fields = fields


@dataclass(frozen=True)
class Caller:
    user: AbstractBaseUser
    memberships: QuerySet[Membership]
    token: ApiToken | None


class MeSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    is_superuser = serializers.BooleanField(source="user.is_superuser", read_only=True)
    teams = CallerTeamSerializer(source="memberships", many=True, read_only=True)
    token = CallerTokenSerializer(
        read_only=True, allow_null=True, help_text="The token this request authenticated with; null for a session."
    )


# --- views --------------------------------------------------------------------------------


class MeView(GenericAPIView):
    """The caller: who they are, their teams and roles, and the token they used."""

    serializer_class = MeSerializer
    pagination_class = None
    filter_backends: list = []

    def get(self, request: Request) -> Response:
        user = signed_in_user(request)
        memberships = user.memberships.select_related("team").order_by("team__name")
        token = request.auth if isinstance(request.auth, ApiToken) else None
        return Response(self.get_serializer(Caller(user=user, memberships=memberships, token=token)).data)


class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The caller's own API tokens. DELETE revokes a token; it stays listed as disabled."""

    permission_classes = [TokenScopePermission, SessionRequired]
    serializer_class = TokenSerializer
    lookup_field = "key_id"
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[ApiToken]:
        return token_list(user=self.request.user)

    @extend_schema(request=TokenCreateSerializer, responses={status.HTTP_201_CREATED: TokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        params = TokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        token, plaintext = token_create(user=signed_in_user(request), **params.validated_data)
        answer = TokenCreatedSerializer(token, context={**self.get_serializer_context(), "plaintext": plaintext})
        return Response(answer.data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        token_revoke(token=instance, actor=signed_in_user(self.request))
