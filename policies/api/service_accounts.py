"""API for service accounts: team-owned identities for pipelines and their tokens.

- `/service-accounts/`: list (the accounts of your teams; every one for platform admins), create
  (an admin of the team or a platform admin), retrieve, and DELETE to revoke (the account and all
  its tokens are disabled at once; history stays).
- `POST /service-accounts/{name}/tokens/`: issue a token, shown once; `GET` lists its tokens.
Works with a session or an API token of an admin; a service account's own token can do none of it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from policies import selectors
from policies.choices import Role
from policies.models import Membership, ServiceAccount, Team
from policies.services import service_accounts as services
from portal.api_views import TokenCreatedSerializer, TokenCreateSerializer, TokenSerializer
from portal.http import signed_in_user


class ServiceAccountSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="user.username", read_only=True)
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    role = serializers.SerializerMethodField()
    active = serializers.BooleanField(source="is_active", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = ServiceAccount
        fields = ["name", "team", "role", "description", "active", "created_by", "created_at", "revoked_at"]
        read_only_fields = fields

    def get_role(self, account: ServiceAccount) -> str:
        membership = next(iter(account.user.memberships.all()), None)
        return membership.role if membership else ""


class ServiceAccountCreateSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=50, help_text="Lowercase letters, digits, dashes; the account is `sa.<name>`."
    )
    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all())
    role = serializers.ChoiceField(choices=[(r.value, r.label) for r in services.ROLES], default=Role.AUTHOR)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ServiceAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, GenericViewSet):
    serializer_class = ServiceAccountSerializer
    lookup_field = "name"
    lookup_value_regex = r"[a-z0-9.-]+"

    def get_queryset(self) -> QuerySet[ServiceAccount]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return ServiceAccount.objects.none()
        accounts = ServiceAccount.objects.select_related("user", "team", "created_by").prefetch_related(
            "user__memberships"
        )
        user = signed_in_user(self.request)
        if selectors.user_is_platform_admin(user):
            return accounts
        teams = Membership.objects.filter(user=user).values("team")
        return accounts.filter(team__in=teams)

    def get_object(self) -> ServiceAccount:
        name = str(self.kwargs["name"])
        username = name if name.startswith(services.PREFIX) else services.PREFIX + name
        account = get_object_or_404(self.get_queryset(), user__username=username)
        self.check_object_permissions(self.request, account)
        return account

    @extend_schema(
        request=ServiceAccountCreateSerializer, responses={status.HTTP_201_CREATED: ServiceAccountSerializer}
    )
    def create(self, request: Request) -> Response:
        params = ServiceAccountCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        account = services.service_account_create(actor=signed_in_user(request), **params.validated_data)
        return Response(ServiceAccountSerializer(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={status.HTTP_200_OK: ServiceAccountSerializer})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        account = services.service_account_revoke(actor=signed_in_user(request), account=self.get_object())
        return Response(ServiceAccountSerializer(account).data)

    @extend_schema(methods=["get"], responses={status.HTTP_200_OK: TokenSerializer(many=True)})
    @extend_schema(
        methods=["post"], request=TokenCreateSerializer, responses={status.HTTP_201_CREATED: TokenCreatedSerializer}
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def tokens(self, request: Request, name: str) -> Response:
        account = self.get_object()
        context = self.get_serializer_context()
        if request.method == "GET":
            if not services.user_may_manage_service_accounts(user=signed_in_user(request), team=account.team):
                return Response(TokenSerializer(account.user.api_tokens.none(), many=True, context=context).data)
            return Response(TokenSerializer(account.user.api_tokens.all(), many=True, context=context).data)
        params = TokenCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        token, plaintext = services.service_account_token_create(
            actor=signed_in_user(request), account=account, **params.validated_data
        )
        return Response(
            TokenCreatedSerializer(token, context={**context, "plaintext": plaintext}).data,
            status=status.HTTP_201_CREATED,
        )
