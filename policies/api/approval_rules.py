"""API for approval rules: platform rules (platform admins) and teams' own, stricter rules (the
team's admins and platform admins). Every write goes through `policies.services.reviews`, as the
page does.

- `/approval-rules/`: list (the platform's rules and every team's), create; `/approval-rules/{id}/`:
  retrieve, PUT / PATCH, DELETE. A team rule asking for less than the platform rule under it is a
  400 naming the environment, kinds and the platform's requirement; another team's rule is a 403.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from policies.choices import PolicyKind, SecurityApproval
from policies.models import ApprovalRule, Environment, Team
from policies.services import reviews as services
from portal.http import signed_in_user


class NameField(serializers.SlugRelatedField):
    """A related object by its name; a name no row could have (a NUL byte, which PostgreSQL text
    refuses) is a 400, never a lookup."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


class ApprovalRuleSerializer(serializers.ModelSerializer):
    team = NameField(
        slug_field="slug",
        queryset=Team.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Empty: a platform rule. A team's slug: that team's own rule for its namespaces.",
    )
    environment = NameField(
        slug_field="name",
        queryset=Environment.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Empty: every environment.",
    )
    kind = serializers.ChoiceField(
        choices=[("", "Every kind"), *PolicyKind.choices], required=False, default="", help_text="Empty: every kind."
    )
    required_approvals = serializers.IntegerField(min_value=1, max_value=10, default=1)
    security_approval = serializers.ChoiceField(choices=SecurityApproval.choices, default=SecurityApproval.DEFAULT)
    extra_production_approval = serializers.BooleanField(default=True)

    class Meta:
        model = ApprovalRule
        fields = [
            "id",
            "team",
            "environment",
            "kind",
            "required_approvals",
            "security_approval",
            "extra_production_approval",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list[Any] = []  # one rule per scope: the service says so, with the scope's name


class ApprovalRuleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    GenericViewSet,
):
    lookup_value_regex = "[0-9]+"  # any other id is a 404, never a 500
    serializer_class = ApprovalRuleSerializer

    def get_queryset(self) -> QuerySet[ApprovalRule]:
        return ApprovalRule.objects.select_related("team", "environment").order_by("pk")

    def _save(self, serializer: Any, rule: ApprovalRule | None) -> ApprovalRule:
        values = dict(serializer.validated_data)
        if rule is not None:  # PATCH: what is not sent stays as it is
            current = {
                "team": rule.team,
                "environment": rule.environment,
                "kind": rule.kind,
                "required_approvals": rule.required_approvals,
                "security_approval": rule.security_approval,
                "extra_production_approval": rule.extra_production_approval,
            }
            values = {**current, **values}
        return services.approval_rule_save(actor=signed_in_user(self.request), rule=rule, **values)

    @extend_schema(responses={status.HTTP_201_CREATED: ApprovalRuleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rule = self._save(serializer, None)
        return Response(self.get_serializer(rule).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = self.get_object()
        serializer = self.get_serializer(rule, data=request.data, partial=kwargs.pop("partial", False))
        serializer.is_valid(raise_exception=True)
        rule = self._save(serializer, rule)
        return Response(self.get_serializer(rule).data)

    def perform_destroy(self, instance: ApprovalRule) -> None:
        services.approval_rule_delete(actor=signed_in_user(self.request), rule=instance)
