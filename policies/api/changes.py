"""API for change requests, for people and CI/CD pipelines.

- `/changes/`: list and retrieve (state, items, approval status, plan summary, reviews); create
  from draft ids or straight from a bundle (JSON text or multipart files), with `Idempotency-Key`.
- One small endpoint per transition, each calling one service: `submit`, `approve`,
  `request-changes`, `comment`, `reject`, `rebase`, `schedule`, `promote`, `refresh-plan`,
  `withdraw` (also `DELETE /changes/{id}/`), `retry`; `PATCH /changes/{id}/` (or `PUT …/items/`)
  replaces the items with a new bundle (a new commit); and
  `status` for pipelines to poll; `rollout-options` (`policies.api.rollout_options`) reads and sets the
  author's rollout plan. An illegal transition answers 409 `illegal_transition` with the
  change's state in `details.state`; the author can never approve (403).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import django_filters
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from policies import approval, selectors
from policies.api.drafts import (
    IDEMPOTENCY_PARAMETER,
    NAMESPACE_PARAMETER,
    DiffSummarySerializer,
    EnvironmentField,
    ErrorSerializer,
    FindingSerializer,
    NamespaceField,
    RejectionSerializer,
    UploadField,
    _upload_payload,
    idempotent,
    is_multipart,
    read_uploads,
    request_data,
    with_namespace,
)
from policies.api.rollout_options import RolloutOptionsField, RolloutPlanSerializer, rollout_plan
from policies.api.serializers import ContentField
from policies.choices import ChangeOutcome, ChangeState, PlanLiveState, PlanStatus
from policies.models import ChangeItem, ChangeRequest, Environment, Plan, Review, ReviewComment, Rollout
from policies.services import change_lifecycle as lifecycle
from policies.services import changes as change_services
from policies.services import promotion as promotion_services
from policies.services import reviews as review_services
from policies.services.plans import plan_is_current
from portal.http import signed_in_user
from portal.parsers import SafeJSONParser

USERNAME: dict[str, Any] = {"slug_field": "username", "read_only": True, "allow_null": True}
_F = TypeVar("_F", bound=Callable[..., Any])


# --- output -----------------------------------------------------------------------------------------


class ApprovalStatusSerializer(serializers.Serializer):
    satisfied = serializers.BooleanField(help_text="The approvals meet every rule.")
    approvable = serializers.BooleanField(help_text="Satisfied and nothing blocks the change.")
    required = serializers.IntegerField()  # type: ignore[assignment]  # a declared field, not Field.required
    approvals = serializers.IntegerField(help_text="Approvals that count.")
    approved_by = serializers.ListField(child=serializers.CharField())
    missing = serializers.ListField(child=serializers.CharField(), help_text="E.g. 'a Security approver'.")
    blockers = serializers.ListField(child=serializers.CharField(), help_text="Stale items, guardrails, plan errors.")
    summary = serializers.CharField(help_text="E.g. '2 of 3 approvals; missing: a Security approver'.")


class GuardrailResultSerializer(serializers.Serializer):
    guardrail_id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    enforcement = serializers.CharField()
    object = serializers.CharField()
    passed = serializers.BooleanField()
    outcome = serializers.CharField()
    message = serializers.CharField(allow_blank=True)


class ChangeItemSerializer(serializers.ModelSerializer):
    base_revision = serializers.IntegerField(source="base_revision.number", read_only=True, allow_null=True)
    current_revision = serializers.IntegerField(
        source="current_revision_number_now",
        read_only=True,
        allow_null=True,
        help_text="The policy's current revision now.",
    )
    stale = serializers.SerializerMethodField(help_text="The policy moved since the item was based on it.")
    findings = FindingSerializer(many=True, read_only=True)
    guardrails = GuardrailResultSerializer(source="guardrail_results", many=True, read_only=True)

    class Meta:
        model = ChangeItem
        fields = [
            "id",
            "kind",
            "namespace",
            "name",
            "operation",
            "policy",
            "base_revision",
            "current_revision",
            "stale",
            "content_hash",
            "message",
            "error_count",
            "warning_count",
            "findings",
            "guardrails",
        ]
        read_only_fields = fields

    def get_stale(self, item: ChangeItem) -> bool:
        return approval.item_is_stale(item)


class ChangeItemDetailSerializer(ChangeItemSerializer):
    content = ContentField(read_only=True, allow_null=True, help_text="The normalized object; null for a deletion.")

    class Meta(ChangeItemSerializer.Meta):
        fields = [*ChangeItemSerializer.Meta.fields, "content", "source_text"]
        read_only_fields = fields


class PlanItemSummarySerializer(serializers.Serializer):
    item = serializers.IntegerField(source="item_id")
    status = serializers.ChoiceField(choices=PlanStatus.choices)
    live_state = serializers.CharField(help_text=f"One of {', '.join(PlanLiveState.values)}.")
    live_resource_version = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    against_live = DiffSummarySerializer(source="diff_live.summary")
    against_base = DiffSummarySerializer(source="diff_base.summary")
    unified = serializers.CharField(
        source="diff_live.unified", help_text="Live → what the cluster will hold, unified YAML diff."
    )
    findings = FindingSerializer(many=True, help_text="Server dry-run findings.")
    after = serializers.JSONField(
        source="after_content",
        allow_null=True,
        help_text="What the cluster would hold after the rollout's write (the server's "
        "dry-run answer, normalized); the diffs compare live with it.",
    )
    ownership = serializers.JSONField(
        help_text="`taken_from`: managers whose fields the write takes over; "
        "`survivors`: fields that would differ from the approved content, "
        "with their owners; `controller`: Argo CD / Flux / Helm."
    )


class PlanSerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField(help_text="False when items changed or a refresh was asked since.")
    items = PlanItemSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Plan
        fields = [
            "id",
            "computed_at",
            "status",
            "error",
            "fingerprint",
            "content_fingerprint",
            "current",
            "duration_ms",
            "items",
        ]
        read_only_fields = fields

    def get_current(self, plan: Plan) -> bool:
        return bool(self.context.get("plan_current"))


class ReviewSerializer(serializers.ModelSerializer):
    reviewer: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(**USERNAME)

    class Meta:
        model = Review
        fields = [
            "id",
            "reviewer",
            "verdict",
            "body",
            "created_at",
            "plan_content_fingerprint",
            "voided_at",
            "voided_reason",
        ]
        read_only_fields = fields


class CommentSerializer(serializers.ModelSerializer):
    author: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(**USERNAME)
    resolved_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(**USERNAME)

    class Meta:
        model = ReviewComment
        fields = ["id", "item", "line", "parent", "body", "author", "created_at", "resolved_at", "resolved_by"]
        read_only_fields = fields


class ChangeSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:change-detail")
    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    author: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(**USERNAME)

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "url",
            "environment",
            "title",
            "state",
            "author",
            "created_at",
            "updated_at",
            "submitted_at",
            "approved_at",
            "scheduled_for",
            "promoted_from",
        ]
        read_only_fields = fields


class ChangeDetailSerializer(ChangeSerializer):
    # A plain string: the change's ticket URL, or "" when none was given (not `format: uri`).
    link = serializers.CharField(read_only=True, allow_blank=True, help_text="A ticket URL, or empty.")
    # Plain strings too: "" when not recorded (a `format: uri` would not admit the empty string).
    repository = serializers.CharField(
        read_only=True, allow_blank=True, help_text="The repository the content comes from, or empty."
    )
    pull_request = serializers.CharField(
        read_only=True, allow_blank=True, help_text="The pull request the change follows, or empty."
    )
    items = serializers.SerializerMethodField()
    stale = serializers.SerializerMethodField()
    approval = serializers.SerializerMethodField()
    plan = serializers.SerializerMethodField()
    reviews = serializers.SerializerMethodField()
    promotions: serializers.PrimaryKeyRelatedField[ChangeRequest] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Changes promoted from this one."
    )
    rollout_options = RolloutOptionsField(
        read_only=True, help_text="The author's rollout plan (set it with `POST …/rollout-options/`)."
    )
    rollout_plan = serializers.SerializerMethodField(
        help_text="The effective rollout plan: the options over the defaults."
    )

    class Meta(ChangeSerializer.Meta):
        fields = [
            *ChangeSerializer.Meta.fields,
            "description",
            "link",
            "repository",
            "commit_sha",
            "pull_request",
            "stale",
            "approval",
            "plan",
            "items",
            "reviews",
            "promotions",
            "promotion_conflicts",
            "withdrawn_at",
            "plan_given_up_at",
            "rollout_options",
            "rollout_plan",
        ]
        read_only_fields = fields

    @extend_schema_field(ChangeItemDetailSerializer(many=True))
    def get_items(self, change: ChangeRequest) -> list[dict[str, Any]]:
        return ChangeItemDetailSerializer(self.context["items"], many=True).data  # type: ignore[return-value]  # many=True: a list

    def get_stale(self, change: ChangeRequest) -> bool:
        return any(approval.item_is_stale(item) for item in self.context["items"])

    @extend_schema_field(ApprovalStatusSerializer())
    def get_approval(self, change: ChangeRequest) -> dict[str, Any]:
        return self.context["approval"].as_dict()

    @extend_schema_field(PlanSerializer(allow_null=True))
    def get_plan(self, change: ChangeRequest) -> dict[str, Any] | None:
        plan = self.context["plan"]
        return PlanSerializer(plan, context=self.context).data if plan is not None else None

    @extend_schema_field(ReviewSerializer(many=True))
    def get_reviews(self, change: ChangeRequest) -> list[dict[str, Any]]:
        return ReviewSerializer(self.context["reviews"], many=True).data  # type: ignore[return-value]  # many=True: a list

    @extend_schema_field(RolloutPlanSerializer())
    def get_rollout_plan(self, change: ChangeRequest) -> dict[str, Any]:
        return RolloutPlanSerializer(rollout_plan(change, self.context["items"])).data


class StatusRolloutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    weight = serializers.IntegerField(help_text="Percent of traffic on the new version.")
    phase = serializers.CharField(help_text="Key of the phase being executed, e.g. w10.")
    phase_index = serializers.IntegerField()
    phases = serializers.IntegerField()
    pause_reason = serializers.CharField(allow_blank=True)
    rollback_reason = serializers.JSONField(allow_null=True)


class ChangeStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=ChangeState.choices)
    environment = serializers.CharField()
    stale = serializers.BooleanField()
    approval = ApprovalStatusSerializer()
    plan_status = serializers.CharField(allow_null=True, help_text="ok or error; null before the first plan.")
    plan_computed_at = serializers.DateTimeField(allow_null=True)
    plan_current = serializers.BooleanField()
    scheduled_for = serializers.DateTimeField(allow_null=True)
    promotions = serializers.ListField(child=serializers.IntegerField())
    done = serializers.BooleanField(
        help_text="True in a final state (rejected, completed, rolled back, failed, aborted): stop polling."
    )
    outcome = serializers.ChoiceField(
        choices=ChangeOutcome.choices,
        help_text="succeeded (completed), failed (rejected, rolled back, failed, aborted) or pending.",
    )
    rollout = StatusRolloutSerializer(allow_null=True)
    version = serializers.CharField(help_text="Changes whenever anything else in the status does.")


def detail_context(request: Request, change: ChangeRequest) -> dict[str, Any]:
    items = list(selectors.change_items(change=change))
    change_services.change_guardrails_refresh(change=change, items=items)
    plan = selectors.change_latest_plan(change=change)
    reviews = selectors.change_reviews(change=change)
    return {
        "request": request,
        "items": items,
        "plan": plan,
        "reviews": reviews,
        "plan_current": plan_is_current(change=change, plan=plan, items=items),
        "approval": approval.approval_status(change, items=items, reviews=reviews, plan=plan),
    }


def detail_response(request: Request, change: ChangeRequest, status_code: int = status.HTTP_200_OK) -> Response:
    change = ChangeRequest.objects.select_related("environment", "author").get(pk=change.pk)
    return Response(ChangeDetailSerializer(change, context=detail_context(request, change)).data, status=status_code)


# --- input ------------------------------------------------------------------------------------------------


class _ChangeHeader(serializers.Serializer):
    environment = EnvironmentField()
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    link = serializers.URLField(required=False, allow_blank=True, default="", max_length=500)
    repository = serializers.URLField(
        required=False,
        allow_blank=True,
        default="",
        max_length=500,
        help_text="The repository the manifests come from.",
    )
    commit_sha = serializers.RegexField(
        r"^[0-9a-fA-F]{7,64}$",
        required=False,
        allow_blank=True,
        default="",
        help_text="The commit the manifests come from.",
    )
    pull_request = serializers.URLField(
        required=False, allow_blank=True, default="", max_length=500, help_text="The pull request the change follows."
    )


class ChangeCreateSerializer(_ChangeHeader):
    drafts = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        allow_empty=False,
        help_text="Ids of your drafts (of this environment) to make the change of.",
    )
    text = serializers.CharField(
        required=False, trim_whitespace=False, help_text="Or a bundle: YAML or JSON with one or more objects."
    )
    filename = serializers.CharField(required=False, default="bundle.yaml", max_length=255)
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    namespace = NamespaceField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("drafts" in attrs) == ("text" in attrs):
            raise ValidationError("give either `drafts` (draft ids) or `text` (a bundle)")
        return attrs


class ChangeCreateUploadSerializer(_ChangeHeader):
    files = UploadField()
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    namespace = NamespaceField()


class BodySerializer(serializers.Serializer):
    body = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class ApproveSerializer(BodySerializer):
    plan_fingerprint = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="The plan's `content_fingerprint` you reviewed: refused (409) if the live state moved since.",
    )


class RequestChangesSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=10_000, help_text="What should change.")


class CommentCreateSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=10_000)
    item = serializers.IntegerField(required=False, allow_null=True, help_text="An item of the change.")
    line = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="A line of the item's YAML (the diff's right side)."
    )
    parent = serializers.IntegerField(required=False, allow_null=True, help_text="Reply to this comment.")  # type: ignore[assignment]  # a declared field, not Field.parent


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class EmptySerializer(serializers.Serializer):
    pass


class ReplaceItemsSerializer(serializers.Serializer):
    text = serializers.CharField(trim_whitespace=False, help_text="The new bundle: YAML or JSON, one or more objects.")
    filename = serializers.CharField(required=False, default="bundle.yaml", max_length=255)
    message = serializers.CharField(
        required=False, allow_blank=True, max_length=500, default="", help_text="E.g. the commit's message."
    )
    commit_sha = serializers.RegexField(
        r"^[0-9a-fA-F]{7,64}$",
        required=False,
        allow_blank=True,
        default="",
        help_text="The new commit the bundle comes from.",
    )


class ReplaceItemsUploadSerializer(serializers.Serializer):
    files = UploadField()
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    commit_sha = serializers.RegexField(r"^[0-9a-fA-F]{7,64}$", required=False, allow_blank=True, default="")


def replace_items(request: Request, change: ChangeRequest) -> ChangeRequest:
    """A new commit of the change, from JSON text or multipart files (archives too)."""
    if is_multipart(request):
        upload = ReplaceItemsUploadSerializer(data=request_data(request))
        upload.is_valid(raise_exception=True)
        values = upload.validated_data
        files = read_uploads(values["files"])
    else:
        params = ReplaceItemsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        files = [(values["filename"], values["text"].encode())]
    return lifecycle.change_items_replace(
        author=signed_in_user(request),
        change=change,
        message=values["message"],
        files=files,
        commit_sha=values["commit_sha"],
    )


class WithdrawSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class NoChangesSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="`no_changes`")
    message = serializers.CharField()
    details = serializers.DictField(help_text="`items`: the objects that already equal live.")


class ChangeFilterSet(django_filters.FilterSet):
    environment = django_filters.CharFilter(field_name="environment__name", help_text="Environment name.")
    state = django_filters.MultipleChoiceFilter(choices=ChangeState.choices)
    author = django_filters.CharFilter(field_name="author__username", help_text="Author's username.")
    mine = django_filters.BooleanFilter(method="filter_mine", help_text="Only the caller's changes.")
    pull_request = django_filters.CharFilter(help_text="The pull request URL the change follows.")

    class Meta:
        model = ChangeRequest
        fields = ["environment", "state", "author", "mine", "pull_request"]

    def filter_mine(self, queryset: QuerySet[ChangeRequest], name: str, value: bool) -> QuerySet[ChangeRequest]:
        return queryset.filter(author=self.request.user) if value else queryset


# --- views --------------------------------------------------------------------------------------------------

ERRORS = {
    status.HTTP_400_BAD_REQUEST: OpenApiResponse(ErrorSerializer, description="Invalid input."),
    status.HTTP_401_UNAUTHORIZED: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    status.HTTP_403_FORBIDDEN: OpenApiResponse(ErrorSerializer, description="Not allowed (e.g. your own change)."),
    status.HTTP_404_NOT_FOUND: OpenApiResponse(ErrorSerializer, description="No such change you may read."),
    status.HTTP_409_CONFLICT: OpenApiResponse(
        ErrorSerializer, description="Illegal in the change's state (`illegal_transition`, `details.state`), or stale."
    ),
}


class ChangeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    """Change requests you can read: yours and those touching your teams' namespaces."""

    lookup_value_regex = "[0-9]+"  # any other id is a 404, never a 500

    filterset_class = ChangeFilterSet
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        return selectors.change_list(user=self.request.user).order_by("-pk")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return ChangeDetailSerializer if self.action == "retrieve" else ChangeSerializer

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return detail_response(request, self.get_object())

    @extend_schema(
        request={"application/json": ChangeCreateSerializer, "multipart/form-data": ChangeCreateUploadSerializer},
        parameters=[IDEMPOTENCY_PARAMETER, NAMESPACE_PARAMETER],
        responses={
            status.HTTP_201_CREATED: ChangeDetailSerializer,
            status.HTTP_200_OK: OpenApiResponse(
                NoChangesSerializer,
                description="`no_changes`: every object of the bundle equals live; nothing stored, nothing to review.",
            ),
            status.HTTP_400_BAD_REQUEST: OpenApiResponse(RejectionSerializer, description="Refused; nothing stored."),
            status.HTTP_403_FORBIDDEN: OpenApiResponse(ErrorSerializer, description="Not your drafts or namespace."),
            status.HTTP_409_CONFLICT: OpenApiResponse(ErrorSerializer, description="A draft moved meanwhile."),
            status.HTTP_422_UNPROCESSABLE_ENTITY: OpenApiResponse(ErrorSerializer, description="Key reused."),
        },
    )
    def create(self, request: Request) -> Response:
        """Create a change (state draft) from your drafts (`drafts`: ids) or from a bundle (`text`, or
        multipart `files`; `namespace` or `?namespace=` is the default namespace of its objects without
        one); the drafts move into the change. Submit it with `…/submit/`."""
        data = with_namespace(request, request_data(request))
        context = self.get_serializer_context()
        files: list[tuple[str, bytes]] | None
        if is_multipart(request):
            params: BaseSerializer[Any] = ChangeCreateUploadSerializer(data=data, context=context)
            params.is_valid(raise_exception=True)
            files = read_uploads(params.validated_data["files"])
            payload = _upload_payload(
                data,
                files,
                (
                    "environment",
                    "title",
                    "description",
                    "link",
                    "message",
                    "repository",
                    "commit_sha",
                    "pull_request",
                    "namespace",
                ),
            )
        else:
            params = ChangeCreateSerializer(data=data, context=context)
            params.is_valid(raise_exception=True)
            values = params.validated_data
            files = [(values["filename"], values["text"].encode())] if "text" in values else None
            payload = {key: (value.name if key == "environment" else value) for key, value in values.items()}
        values = params.validated_data
        header = {
            "author": request.user,
            "environment": values["environment"],
            "title": values["title"],
            "description": values["description"],
            "link": values["link"],
            "source": change_services.ChangeSource(
                repository=values["repository"], commit_sha=values["commit_sha"], pull_request=values["pull_request"]
            ),
        }

        def produce() -> Response:
            if files is not None:
                change = change_services.change_create_from_bundle(
                    files=files, message=values["message"], default_namespace=values["namespace"], **header
                )
            else:
                ids = values["drafts"]
                drafts = list(selectors.draft_list(user=request.user).filter(pk__in=ids))
                missing = sorted(set(ids) - {draft.pk for draft in drafts})
                if missing:
                    raise ValidationError({"drafts": [f"you have no draft with id {pk}" for pk in missing]})
                change = change_services.change_create(drafts=drafts, **header)
            return detail_response(request, change, status.HTTP_201_CREATED)

        return idempotent(request, payload, produce)

    @extend_schema(
        operation_id="changes_replace_items",
        request=ReplaceItemsSerializer,
        summary="Replace the items with a new bundle (author; a new commit of an open change).",
        responses={status.HTTP_200_OK: ChangeDetailSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, pk: int) -> Response:
        change = get_object_or_404(selectors.change_list(user=request.user), pk=pk)
        return detail_response(request, replace_items(request, change))

    @extend_schema(
        operation_id="changes_withdraw_delete",
        summary="Withdraw the change (author; before rollout).",
        responses={status.HTTP_200_OK: ChangeDetailSerializer, **ERRORS},
    )
    def destroy(self, request: Request, pk: int) -> Response:
        change = get_object_or_404(selectors.change_list(user=request.user), pk=pk)
        return detail_response(request, lifecycle.change_withdraw(actor=signed_in_user(request), change=change))


class ChangeActionView(APIView):
    """One transition of one change: parse input, call one service, answer the change."""

    input_serializer: type[serializers.Serializer] = EmptySerializer
    success_status: int = status.HTTP_200_OK

    def change(self, request: Request, pk: int) -> ChangeRequest:
        return get_object_or_404(selectors.change_list(user=request.user), pk=pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def respond(self, request: Request, change: ChangeRequest, result: Any) -> Response:
        return detail_response(request, change, self.success_status)

    def post(self, request: Request, pk: int) -> Response:
        change = self.change(request, pk)
        params = self.input_serializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = self.act(request, change, params.validated_data)
        return self.respond(request, change, result)


def _action_schema(
    operation_id: str,
    request_serializer: Any,
    summary: str,
    response: Any = ChangeDetailSerializer,
    success: int = status.HTTP_200_OK,
) -> Callable[[_F], _F]:
    return extend_schema(
        operation_id=operation_id, summary=summary, request=request_serializer, responses={success: response, **ERRORS}
    )


class ChangeSubmitView(ChangeActionView):
    @_action_schema("changes_submit", EmptySerializer, "Submit for review (author; draft or changes_requested).")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return change_services.change_submit(actor=signed_in_user(request), change=change)


class ChangeApproveView(ChangeActionView):
    input_serializer = ApproveSerializer

    @_action_schema(
        "changes_approve",
        ApproveSerializer,
        "Approve against a freshly computed plan (approvers of the owning teams; never the author).",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return review_services.review_approve(
            reviewer=signed_in_user(request),
            change=change,
            body=data["body"],
            plan_fingerprint=data["plan_fingerprint"] or None,
        )


class ChangeRequestChangesView(ChangeActionView):
    input_serializer = RequestChangesSerializer

    @_action_schema(
        "changes_request_changes",
        RequestChangesSerializer,
        "Request changes (voids every approval; back to the author).",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return review_services.review_request_changes(
            reviewer=signed_in_user(request), change=change, body=data["body"]
        )


class ChangeCommentView(ChangeActionView):
    input_serializer = CommentCreateSerializer
    success_status = status.HTTP_201_CREATED

    @_action_schema(
        "changes_comment",
        CommentCreateSerializer,
        "Comment on the change, an item, or a line of an item; or reply to a comment.",
        response=CommentSerializer,
        success=status.HTTP_201_CREATED,
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        item = parent = None
        if data.get("item"):
            item = ChangeItem.objects.filter(pk=data["item"], change=change).first()
            if item is None:
                raise ValidationError({"item": [f"change #{change.pk} has no item {data['item']}"]})
        if data.get("parent"):
            parent = ReviewComment.objects.filter(pk=data["parent"], change=change).first()
            if parent is None:
                raise ValidationError({"parent": [f"change #{change.pk} has no comment {data['parent']}"]})
        return review_services.review_comment(
            author=signed_in_user(request),
            change=change,
            body=data["body"],
            item=item,
            line=data.get("line"),
            parent=parent,
        )

    def respond(self, request: Request, change: ChangeRequest, result: Any) -> Response:
        return Response(CommentSerializer(result).data, status=self.success_status)


class ChangeRejectView(ChangeActionView):
    input_serializer = RejectSerializer

    @_action_schema("changes_reject", RejectSerializer, "Reject the change (final; approvers).")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return change_services.change_reject(actor=signed_in_user(request), change=change, reason=data["reason"])


class ChangeRebaseView(ChangeActionView):
    @_action_schema(
        "changes_rebase",
        EmptySerializer,
        "Rebase stale items onto the policies' current revisions (author; voids approvals).",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return change_services.change_rebase(actor=signed_in_user(request), change=change)


class ChangeScheduleView(ChangeActionView):
    @_action_schema(
        "changes_schedule",
        EmptySerializer,
        "Schedule an approved change for the next opening of the environment's change windows.",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return change_services.change_schedule(actor=signed_in_user(request), change=change)


class ChangePromoteView(ChangeActionView):
    success_status = status.HTTP_201_CREATED

    @_action_schema(
        "changes_promote",
        EmptySerializer,
        "Promote a completed change to the next environment: answers the new, linked change.",
        success=status.HTTP_201_CREATED,
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return promotion_services.change_promote(actor=signed_in_user(request), change=change)

    def respond(self, request: Request, change: ChangeRequest, result: Any) -> Response:
        return detail_response(request, result, self.success_status)


class ChangeReplaceItemsView(ChangeActionView):
    http_method_names = ["put", "options"]
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]

    @extend_schema(
        operation_id="changes_items_replace",
        summary="Replace the items with a new bundle (author; a new commit of an open change).",
        request={"application/json": ReplaceItemsSerializer, "multipart/form-data": ReplaceItemsUploadSerializer},
        responses={status.HTTP_200_OK: ChangeDetailSerializer, **ERRORS},
    )
    def put(self, request: Request, pk: int) -> Response:
        return detail_response(request, replace_items(request, self.change(request, pk)))


class ChangeWithdrawView(ChangeActionView):
    input_serializer = WithdrawSerializer

    @_action_schema("changes_withdraw", WithdrawSerializer, "Withdraw the change (author; before its rollout).")
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return lifecycle.change_withdraw(actor=signed_in_user(request), change=change, reason=data["reason"])

    def respond(self, request: Request, change: ChangeRequest, result: Any) -> Response:
        return detail_response(request, result)


class ChangeRetryView(ChangeActionView):
    @_action_schema(
        "changes_retry",
        EmptySerializer,
        "Retry a rolled-back or failed change (approver of the owning team): a new rollout attempt "
        "when nothing moved since the approved plan, else back to review.",
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return lifecycle.change_retry(actor=signed_in_user(request), change=change)

    def respond(self, request: Request, change: ChangeRequest, result: Any) -> Response:
        return detail_response(request, result)


class ChangeRefreshPlanView(ChangeActionView):
    success_status = status.HTTP_202_ACCEPTED

    @_action_schema(
        "changes_refresh_plan",
        EmptySerializer,
        "Ask the worker for a new plan (poll `status/` for `plan_current`).",
        success=status.HTTP_202_ACCEPTED,
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)

    def act(self, request: Request, change: ChangeRequest, data: dict[str, Any]) -> Any:
        return change_services.change_refresh_plan(actor=signed_in_user(request), change=change)


MAX_STATUS_WAIT = 60
STATUS_POLL_SECONDS = 0.5


class StatusWaitSerializer(serializers.Serializer):
    wait = serializers.IntegerField(min_value=0, max_value=MAX_STATUS_WAIT, default=0)
    version = serializers.CharField(max_length=64, required=False)


class ChangeStatusView(APIView):
    """What a pipeline follows: state, approvals, staleness, the plan and the rollout, with a
    terminal `outcome`. With `?wait=SECONDS` (at most 60) and `?version=` (the version of the last
    answer), the request waits until something changes or the time is up, so a pipeline waits
    without a polling loop of its own."""

    @extend_schema(
        operation_id="changes_status",
        parameters=[
            OpenApiParameter(
                "wait",
                OpenApiTypes.INT,
                OpenApiParameter.QUERY,
                description=f"Seconds to wait for a change of version (0-{MAX_STATUS_WAIT}).",
            ),
            OpenApiParameter(
                "version",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="The `version` of the last answer: wait until the status differs from it.",
            ),
        ],
        responses={status.HTTP_200_OK: ChangeStatusSerializer, **ERRORS},
    )
    def get(self, request: Request, pk: int) -> Response:
        params = StatusWaitSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        visible = selectors.change_list(user=request.user)
        change = get_object_or_404(visible, pk=pk)
        data = change_status(change)
        deadline = time.monotonic() + params.validated_data["wait"]
        known = params.validated_data.get("version")
        while known and data["version"] == known and not data["done"] and time.monotonic() < deadline:
            time.sleep(STATUS_POLL_SECONDS)
            data = change_status(get_object_or_404(visible, pk=pk))
        return Response(ChangeStatusSerializer(data).data)


def change_status(change: ChangeRequest) -> dict[str, Any]:
    """The status body, with a `version` that changes whenever any other field does."""
    items = list(selectors.change_items(change=change))
    plan = selectors.change_latest_plan(change=change)
    status_ = approval.approval_status(change, items=items, plan=plan)
    rollout = Rollout.objects.filter(change=change).first()
    rollout_data = None
    if rollout is not None:
        phases = rollout.phases or []
        phase = phases[rollout.step_index] if rollout.step_index < len(phases) else {}
        rollout_data = {
            "id": rollout.pk,
            "state": rollout.state,
            "weight": rollout.current_weight,
            "phase": phase.get("key", "") if isinstance(phase, dict) else "",
            "phase_index": rollout.step_index,
            "phases": len(phases),
            "pause_reason": rollout.pause_reason,
            "rollback_reason": rollout.rollback_reason or None,
        }
    outcome = ChangeOutcome.of(change.state)
    data: dict[str, Any] = {
        "id": change.pk,
        "state": change.state,
        "environment": change.environment.name,
        "outcome": outcome.value,
        "done": outcome != ChangeOutcome.PENDING,
        "stale": any(approval.item_is_stale(item) for item in items),
        "approval": status_.as_dict(),
        "plan_status": plan.status if plan else None,
        "plan_computed_at": plan.computed_at if plan else None,
        "plan_current": plan_is_current(change=change, plan=plan, items=items),
        "scheduled_for": change.scheduled_for,
        "promotions": list(change.promotions.values_list("pk", flat=True)),
        "rollout": rollout_data,
    }
    data["version"] = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return data
