"""API for validation, drafts and bundles of drafts.

- `POST /validate`: validate text or uploaded files (archives too) against an environment; stores
  nothing. A token with `read` scope suffices.
- `/drafts/`: the caller's drafts (list, retrieve with fresh findings and the diff, create,
  partial update, discard) and `POST /drafts/bundle/` to draft every object of a bundle at once.
  Create and bundle accept an `Idempotency-Key` header.

The views parse input, call one service or selector, and render; the rules are in
`policies.services.drafts`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import django_filters
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from policies import selectors
from policies.api.reports import REPORT_RENDERERS
from policies.api.serializers import ContentField
from policies.bundles import MAX_BUNDLE_FILES, expand_bundle
from policies.choices import DraftOperation
from policies.diff import ObjectDiff
from policies.exceptions import IdempotencyKeyReused, RequestTooLarge
from policies.models import Draft, Environment, IdempotencyKey, Policy
from policies.services.drafts import (
    draft_discard,
    draft_save,
    draft_update_message,
    drafts_from_bundle,
    workflow_findings,
)
from policies.validation import Finding, Level
from policies.validation.limits import MAX_BUNDLE_BYTES, MIB
from policies.validation.service import ValidationReport, validate_bundle, validate_text
from portal.choices import TokenScope
from portal.http import signed_in_user
from portal.models import ApiToken
from portal.parsers import SafeJSONParser
from portal.permissions import TokenScopePermission

MAX_REQUEST_BYTES = MAX_BUNDLE_BYTES + 2 * MIB  # the bundle limit plus room for JSON escaping and multipart framing
IDEMPOTENCY_TTL = timedelta(hours=24)
IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


# --- permissions ------------------------------------------------------------------------------


class ReadScopePermission(TokenScopePermission):
    """Authenticated; a token needs `read` even for POST (validation stores nothing)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if isinstance(request.auth, ApiToken):
            return request.auth.has_scope(TokenScope.READ)
        return True


# --- serializers ------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(help_text="For validation errors: field names, or `findings`.")


class FindingSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable code, e.g. MG0302; explained at /docs/findings/<code>/.")
    level = serializers.ChoiceField(choices=Level.choices)
    message = serializers.CharField()
    layer = serializers.CharField(help_text="parse, schema, semantic, dryrun or permission.")
    file = serializers.CharField(allow_blank=True)
    document = serializers.IntegerField(allow_null=True, help_text="Zero-based index of the YAML document in the file.")
    line = serializers.IntegerField(allow_null=True, help_text="One-based line in the file.")
    column = serializers.IntegerField(allow_null=True)
    path = serializers.CharField(allow_blank=True, help_text="Field path, e.g. spec.http[0].route[1].weight.")
    object = serializers.CharField(allow_blank=True, help_text="E.g. VirtualService bookinfo/reviews.")
    istio_code = serializers.CharField(
        allow_blank=True,
        help_text="The matching `istioctl analyze` message code (e.g. IST0101), or empty when there is none.",
    )


class RejectionDetailsSerializer(serializers.Serializer):
    """A 400 carries `findings` for refused content, or field names (with their messages) for bad fields."""

    findings = FindingSerializer(many=True, required=False)


class RejectionSerializer(ErrorSerializer):
    details = RejectionDetailsSerializer()  # type: ignore[assignment]  # redeclares the field with its shape


@extend_schema_field(OpenApiTypes.STR)
class EnvironmentField(serializers.SlugRelatedField):
    default_error_messages = {
        "does_not_exist": "no environment is named {value!r}",
        "invalid": "give the environment's name",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "name")
        kwargs.setdefault("help_text", "Name of the target environment, e.g. staging.")
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Environment]:
        return selectors.environment_list(user=self.context["request"].user)


NAMESPACE_HELP = (
    "Default namespace for objects without metadata.namespace, as `kubectl -n NAMESPACE` "
    "would apply them (also accepted as the query parameter `?namespace=`)."
)


class NamespaceField(serializers.RegexField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("max_length", 63)
        kwargs.setdefault("help_text", NAMESPACE_HELP)
        kwargs.setdefault(
            "error_messages",
            {
                "invalid": "not a valid namespace: at most 63 lower-case letters, digits and '-', starting and ending "
                "with a letter or digit"
            },
        )
        super().__init__(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", **kwargs)


NAMESPACE_PARAMETER = OpenApiParameter(
    "namespace",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    required=False,
    description="Default namespace for objects without metadata.namespace (like `kubectl -n`); the body's "
    "`namespace` field wins when both are given.",
)


def with_namespace(request: Request, data: Any) -> Any:
    """The request's data with `namespace` from `?namespace=` when the body does not set it."""
    query = request.query_params.get("namespace")
    if query is None or not hasattr(data, "get") or data.get("namespace"):
        return data  # not a JSON object: the serializer refuses it
    if hasattr(data, "copy"):
        data = data.copy()
    else:
        data = dict(data)
    data["namespace"] = query
    return data


class ValidateTextSerializer(serializers.Serializer):
    environment = EnvironmentField()
    namespace = NamespaceField()
    text = serializers.CharField(
        trim_whitespace=False, allow_blank=True, help_text="YAML or JSON, one or more documents."
    )
    filename = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=255, help_text="Shown as the file of findings."
    )
    dry_run = serializers.BooleanField(default=False, help_text="Also ask the cluster's API server (dryRun=All).")
    checks = serializers.ChoiceField(
        choices=[("all", "all"), ("content", "content")],
        default="all",
        help_text="all (default): also what a change will check, your role in each namespace and the guardrails; "
        "content: the objects only.",
    )


class UploadField(serializers.ListField):
    child = serializers.FileField(allow_empty_file=True)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_empty", False)
        kwargs.setdefault(
            "help_text",
            "Manifests (*.yaml, *.yml, *.json) or archives of a folder of them (.tar, .tar.gz, .tgz, .zip).",
        )
        super().__init__(**kwargs)


class ValidateUploadSerializer(serializers.Serializer):
    environment = EnvironmentField()
    namespace = NamespaceField()
    files = UploadField()
    dry_run = serializers.BooleanField(default=False)
    checks = serializers.ChoiceField(
        choices=[("all", "all"), ("content", "content")], default="all", help_text="As for JSON text."
    )


class ValidatedDocumentSerializer(serializers.Serializer):
    file = serializers.CharField(allow_blank=True)
    index = serializers.IntegerField(help_text="Zero-based index of the YAML document in the file.")
    kind = serializers.CharField(allow_blank=True)
    namespace = serializers.CharField(allow_blank=True)
    name = serializers.CharField(allow_blank=True)
    line = serializers.IntegerField(help_text="Line where the object starts.")


class ValidateResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField(help_text="True when no finding is an error.")
    findings = FindingSerializer(many=True)
    documents = ValidatedDocumentSerializer(many=True)


class DiffChangeSerializer(serializers.Serializer):
    path = serializers.CharField()
    op = serializers.ChoiceField(choices=["added", "removed", "changed"])
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class DiffSummarySerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    changed = serializers.IntegerField()


class DiffSerializer(serializers.Serializer):
    summary = DiffSummarySerializer()
    changes = DiffChangeSerializer(many=True)
    unified = serializers.CharField(help_text="The YAML diff in unified format (current revision → draft).")


class DraftSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:draft-detail")
    environment: serializers.SlugRelatedField[Environment] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )
    policy: serializers.PrimaryKeyRelatedField[Policy] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The policy this draft changes; null for a new one."
    )
    base_revision = serializers.IntegerField(
        source="base_revision.number",
        read_only=True,
        allow_null=True,
        help_text="The policy's current revision when the draft was started.",
    )
    author: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Draft
        fields = [
            "id",
            "url",
            "environment",
            "kind",
            "namespace",
            "name",
            "operation",
            "policy",
            "base_revision",
            "author",
            "message",
            "content_hash",
            "error_count",
            "warning_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DraftDetailSerializer(DraftSerializer):
    content = ContentField(read_only=True, allow_null=True, help_text="The normalized object; null for a deletion.")
    current_revision = serializers.SerializerMethodField(help_text="The policy's current revision number, if any.")
    stale = serializers.SerializerMethodField(help_text="True when the policy moved on since the draft was started.")
    valid = serializers.SerializerMethodField(help_text="True when no finding is an error.")
    findings = serializers.SerializerMethodField(help_text="Findings of a validation run for this answer.")
    diff = serializers.SerializerMethodField(help_text="The draft against the policy's current revision.")

    class Meta(DraftSerializer.Meta):
        fields = [
            *DraftSerializer.Meta.fields,
            "content",
            "source_text",
            "current_revision",
            "stale",
            "valid",
            "findings",
            "diff",
        ]
        read_only_fields = fields

    def get_current_revision(self, draft: Draft) -> int | None:
        current = draft.policy.current_revision if draft.policy is not None else None
        return current.number if current is not None else None

    def get_stale(self, draft: Draft) -> bool:
        current = draft.policy.current_revision_id if draft.policy is not None else None
        return current != draft.base_revision_id

    @extend_schema_field(serializers.BooleanField())
    def get_valid(self, draft: Draft) -> bool:
        return not any(finding["level"] == Level.ERROR for finding in self._findings(draft))

    @extend_schema_field(FindingSerializer(many=True))
    def get_findings(self, draft: Draft) -> list[dict]:
        return self._findings(draft)

    @extend_schema_field(DiffSerializer())
    def get_diff(self, draft: Draft) -> dict:
        diff: ObjectDiff = self.context.get("diff") or selectors.draft_diff(draft=draft)
        return diff.as_dict()

    def _findings(self, draft: Draft) -> list[dict]:
        findings = self.context.get("findings")
        if findings is None:
            report = selectors.draft_validation(draft=draft)
            findings = [finding.as_dict() for finding in report.findings] if report is not None else []
            self.context["findings"] = findings  # type: ignore[index]  # the stubs type the context read-only; it is a dict
        return findings


class DraftCreateSerializer(serializers.Serializer):
    environment = EnvironmentField()
    text = serializers.CharField(trim_whitespace=False, help_text="The object's YAML or JSON: exactly one object.")
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class DraftUpdateSerializer(serializers.Serializer):
    text = serializers.CharField(
        required=False,
        trim_whitespace=False,
        help_text="New text for the same object (kind, namespace and name cannot change).",
    )
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise ValidationError("give `text`, `message` or both")
        return attrs


class BundleTextSerializer(serializers.Serializer):
    environment = EnvironmentField()
    namespace = NamespaceField()
    text = serializers.CharField(trim_whitespace=False, help_text="YAML or JSON with one or more objects.")
    filename = serializers.CharField(required=False, default="bundle.yaml", max_length=255)
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class BundleUploadSerializer(serializers.Serializer):
    environment = EnvironmentField()
    namespace = NamespaceField()
    files = UploadField()
    message = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class DraftFilterSet(django_filters.FilterSet):
    environment = django_filters.CharFilter(field_name="environment__name", help_text="Environment name.")
    namespace = django_filters.CharFilter()
    kind = django_filters.CharFilter()
    operation = django_filters.ChoiceFilter(choices=DraftOperation.choices)

    class Meta:
        model = Draft
        fields = ["environment", "namespace", "kind", "operation"]


# --- input helpers ------------------------------------------------------------------------------


def request_data(request: Request) -> Any:
    """`request.data`, refusing bodies over the limit before they are read, with a JSON 4xx."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    try:
        size = int(length)
    except ValueError:
        size = 0
    if size > MAX_REQUEST_BYTES:
        raise RequestTooLarge(
            f"the request body is {size / MIB:.1f} MiB, more than the {MAX_REQUEST_BYTES // MIB} MiB accepted: "
            "split the bundle into smaller ones",
            extra={"limit_bytes": MAX_REQUEST_BYTES, "size_bytes": size},
        )
    try:
        return request.data
    except RequestDataTooBig as exc:
        raise RequestTooLarge(
            "a form field of the request is too large: send large manifests as files or as JSON",
            extra={"limit_bytes": MAX_REQUEST_BYTES},
        ) from exc
    except TooManyFilesSent as exc:
        raise ValidationError(
            {"files": ["too many files in one request: put the manifests in one archive (.tar.gz or .zip) instead"]}
        ) from exc
    except TooManyFieldsSent as exc:
        raise ValidationError("too many form fields in one request") from exc


def is_multipart(request: Request) -> bool:
    return (request.content_type or "").startswith(("multipart/form-data", "application/x-www-form-urlencoded"))


def read_uploads(uploads: list[UploadedFile[bytes]]) -> list[tuple[str, bytes]]:
    """The uploaded files' names and bytes, refusing more than a bundle may hold before reading."""
    total = sum(upload.size or 0 for upload in uploads)
    if total > MAX_BUNDLE_BYTES:
        raise RequestTooLarge(
            f"the files are {total / MIB:.1f} MiB together, more than the {MAX_BUNDLE_BYTES // MIB} MiB a bundle "
            "may hold: split the bundle into smaller ones",
            extra={"limit_bytes": MAX_BUNDLE_BYTES, "size_bytes": total},
        )
    if len(uploads) > MAX_BUNDLE_FILES:
        raise ValidationError({"files": [f"at most {MAX_BUNDLE_FILES} files per bundle"]})
    return [(upload.name or f"file-{position + 1}", upload.read()) for position, upload in enumerate(uploads)]


def report_body(report: ValidationReport | None, extra_findings: Sequence[Finding] = ()) -> dict[str, Any]:
    findings = [*extra_findings, *report.findings] if report is not None else list(extra_findings)
    documents = report.documents if report is not None else []
    return {
        "valid": not any(_is_error(finding) for finding in findings),
        "findings": [finding.as_dict() for finding in findings],
        "documents": [
            {
                "file": doc.file,
                "index": doc.index,
                "kind": doc.kind,
                "namespace": doc.namespace,
                "name": doc.name,
                "line": doc.start_line,
            }
            for doc in documents
        ],
    }


def report_response(body: dict[str, Any]) -> Response:
    """The validation answer, with the count of findings per level in `X-Meshgate-Findings`
    (e.g. `error=1, warning=0, info=2`) whatever format the body is rendered in."""
    counts = {level.value: 0 for level in Level}
    for finding in body["findings"]:
        counts[finding["level"]] = counts.get(finding["level"], 0) + 1
    response = Response(body)
    response["X-Meshgate-Findings"] = ", ".join(f"{level}={count}" for level, count in counts.items())
    return response


def _is_error(finding: Finding) -> bool:
    return str(getattr(finding.level, "value", finding.level)) == Level.ERROR


# --- idempotency --------------------------------------------------------------------------------


def request_fingerprint(request: Request, payload: Any) -> str:
    """What makes two requests 'the same': method, path and the body (files by their digest)."""
    canonical = json.dumps(
        {"method": request.method, "path": request.path, "body": payload},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent(request: Request, payload: Any, produce: Callable[[], Response]) -> Response:
    """Runs `produce` once per (user, Idempotency-Key) within 24 hours and replays its answer.

    Only successful answers are kept: after a refusal the client fixes the request and may retry
    with the same key. The same key with a different request answers 422.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return produce()
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationError({IDEMPOTENCY_HEADER: ["1 to 255 printable ASCII characters, without spaces"]})
    fingerprint = request_fingerprint(request, payload)
    user = signed_in_user(request)
    IdempotencyKey.objects.filter(user=user, key=key, created_at__lt=timezone.now() - IDEMPOTENCY_TTL).delete()
    stored = IdempotencyKey.objects.filter(user=user, key=key).first()
    if stored is None:
        response = produce()
        if not status.is_success(response.status_code):
            return response
        try:
            IdempotencyKey.objects.create(
                user=user,
                key=key,
                request_hash=fingerprint,
                response_status=response.status_code,
                response_body=json.loads(json.dumps(response.data, default=str)),
            )
            return response
        except IntegrityError:  # a concurrent request with the same key won: answer what it answered
            stored = IdempotencyKey.objects.get(user=user, key=key)
    if stored.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "idempotency key reused with a different request: use a new key for a new request",
            extra={"key": key},
        )
    return Response(stored.response_body, status=stored.response_status, headers={"Idempotent-Replayed": "true"})


def _upload_payload(data: Any, uploads: list[tuple[str, bytes]], fields: tuple[str, ...]) -> dict[str, Any]:
    return {
        "fields": {name: data.get(name) for name in fields},
        "files": [[name, hashlib.sha256(content).hexdigest()] for name, content in uploads],
    }


# --- views ----------------------------------------------------------------------------------------

ERRORS = {
    status.HTTP_400_BAD_REQUEST: OpenApiResponse(
        ErrorSerializer, description="Invalid input; `details` names the field."
    ),
    status.HTTP_401_UNAUTHORIZED: OpenApiResponse(ErrorSerializer, description="Not authenticated."),
    status.HTTP_403_FORBIDDEN: OpenApiResponse(ErrorSerializer, description="The token lacks the scope."),
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: OpenApiResponse(ErrorSerializer, description="Body over the limit."),
}
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (e.g. a UUID). Resending the same request with the same key within 24 hours "
    "returns the first answer without acting again; the same key with a different request answers 422.",
)


class ValidateView(APIView):
    """Validate manifests against an environment. Stores nothing.

    Send JSON `{"environment", "text", "filename", "dry_run", "namespace"}`, or multipart with
    `environment` (and `namespace`) and one or more `files` (manifests, or .tar/.tar.gz/.tgz/.zip
    archives of a folder of them). `namespace` (or `?namespace=`) is the default namespace of
    objects without one, as `kubectl -n` applies them.
    """

    permission_classes = [ReadScopePermission]
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]
    renderer_classes = REPORT_RENDERERS

    def handle_exception(self, exc: Exception) -> Response:
        # A refused request is answered as JSON whatever report format was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(
        operation_id="validate",
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=["json", "sarif", "junit"],
                description="Answer as JSON (default), SARIF 2.1.0 or JUnit XML.",
            ),
            NAMESPACE_PARAMETER,
        ],
        request={"application/json": ValidateTextSerializer, "multipart/form-data": ValidateUploadSerializer},
        responses={
            (status.HTTP_200_OK, "application/json"): ValidateResultSerializer,
            (status.HTTP_200_OK, "application/sarif+json"): OpenApiTypes.OBJECT,
            (status.HTTP_200_OK, "application/xml"): OpenApiTypes.STR,
            **ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        data = with_namespace(request, request_data(request))
        context = {"request": request}
        if is_multipart(request):
            params: BaseSerializer[Any] = ValidateUploadSerializer(data=data, context=context)
            params.is_valid(raise_exception=True)
            files, problems = expand_bundle(read_uploads(params.validated_data["files"]))
            report = None
            if files or not problems:
                report = validate_bundle(
                    environment=params.validated_data["environment"],
                    files=files,
                    dry_run=params.validated_data["dry_run"],
                    default_namespace=params.validated_data["namespace"],
                )
            return report_response(report_body(report, problems + self._workflow(params.validated_data, report)))
        params = ValidateTextSerializer(data=data, context=context)
        params.is_valid(raise_exception=True)
        values = dict(params.validated_data)
        checks = values.pop("checks")
        report = validate_text(default_namespace=values.pop("namespace"), **values)
        return report_response(report_body(report, self._workflow({**values, "checks": checks}, report)))

    def _workflow(self, values: dict[str, Any], report: ValidationReport | None) -> list[Finding]:
        if values["checks"] == "content" or report is None:
            return []
        return workflow_findings(
            author=signed_in_user(self.request), environment=values["environment"], documents=report.documents
        )


class DraftViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, GenericViewSet):
    """Your drafts: proposed content for one policy each, mutable until submitted.

    A draft is saved even when it has schema or cross-resource findings (they are returned with
    it); text that does not parse, is not exactly one object, or is in a namespace your team does
    not own is refused with its findings and nothing is stored. Discarding is DELETE.
    """

    lookup_value_regex = "[0-9]+"  # any other id is a 404, never a 500

    filterset_class = DraftFilterSet
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Draft]:
        if self.action == "list":
            return selectors.draft_list(user=self.request.user).defer(
                "content", "source_text", "findings", "base_revision__content", "policy__current_revision__content"
            )
        return selectors.draft_visible_list(user=self.request.user)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return DraftSerializer if self.action in ("list", "bundle") else DraftDetailSerializer

    def _detail(self, draft: Draft, *, findings: list[dict] | None = None, status_code: int = 200) -> Response:
        context = {**self.get_serializer_context(), "diff": selectors.draft_diff(draft=draft)}
        if findings is not None:
            context["findings"] = findings
        return Response(DraftDetailSerializer(draft, context=context).data, status=status_code)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._detail(self.get_object())

    @extend_schema(
        request=DraftCreateSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            status.HTTP_201_CREATED: DraftDetailSerializer,
            status.HTTP_400_BAD_REQUEST: OpenApiResponse(RejectionSerializer, description="Refused: see findings."),
            status.HTTP_403_FORBIDDEN: OpenApiResponse(RejectionSerializer, description="Not your namespace."),
            status.HTTP_422_UNPROCESSABLE_ENTITY: OpenApiResponse(ErrorSerializer, description="Key reused."),
        },
    )
    def create(self, request: Request) -> Response:
        """Save the one object in `text` as a draft (your existing draft for that object is updated)."""
        params = DraftCreateSerializer(data=request_data(request), context=self.get_serializer_context())
        params.is_valid(raise_exception=True)
        values = params.validated_data

        def produce() -> Response:
            result = draft_save(
                author=signed_in_user(request),
                environment=values["environment"],
                text=values["text"],
                message=values["message"],
            )
            findings = [finding.as_dict() for finding in result.report.findings]
            return self._detail(result.draft, findings=findings, status_code=status.HTTP_201_CREATED)

        payload = {"environment": values["environment"].name, "text": values["text"], "message": values["message"]}
        return idempotent(request, payload, produce)

    @extend_schema(
        request=DraftUpdateSerializer,
        responses={
            status.HTTP_200_OK: DraftDetailSerializer,
            status.HTTP_400_BAD_REQUEST: OpenApiResponse(RejectionSerializer, description="Refused: see findings."),
            status.HTTP_403_FORBIDDEN: OpenApiResponse(ErrorSerializer, description="Not your draft."),
        },
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change a draft's text (same object only) and/or its message."""
        draft = self.get_object()
        params = DraftUpdateSerializer(data=request_data(request))
        params.is_valid(raise_exception=True)
        values = params.validated_data
        if "text" in values:
            result = draft_save(
                author=signed_in_user(request),
                environment=draft.environment,
                text=values["text"],
                draft=draft,
                message=values.get("message"),
            )
            return self._detail(result.draft, findings=[finding.as_dict() for finding in result.report.findings])
        return self._detail(
            draft_update_message(author=signed_in_user(request), draft=draft, message=values["message"])
        )

    def perform_destroy(self, instance: Draft) -> None:
        draft_discard(actor=signed_in_user(self.request), draft=instance)

    @extend_schema(
        request={"multipart/form-data": BundleUploadSerializer, "application/json": BundleTextSerializer},
        parameters=[IDEMPOTENCY_PARAMETER, NAMESPACE_PARAMETER],
        responses={
            status.HTTP_201_CREATED: DraftSerializer(many=True),
            status.HTTP_400_BAD_REQUEST: OpenApiResponse(
                RejectionSerializer, description="`bundle_rejected`: every finding that blocks it; nothing stored."
            ),
            status.HTTP_403_FORBIDDEN: OpenApiResponse(RejectionSerializer, description="Not your namespace(s)."),
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: OpenApiResponse(ErrorSerializer, description="Too large."),
            status.HTTP_422_UNPROCESSABLE_ENTITY: OpenApiResponse(ErrorSerializer, description="Key reused."),
        },
    )
    @action(detail=False, methods=["post"], url_path="bundle", pagination_class=None, filter_backends=[])
    def bundle(self, request: Request) -> Response:
        """Draft every object of a bundle: all of them, or none when any document is refused.

        Multipart with `environment`, `message` and one or more `files` (manifests or archives of
        a folder of them), or JSON `{"environment", "text", "message"}`; `namespace` (or
        `?namespace=`) is the default namespace of objects without one.
        """
        data = with_namespace(request, request_data(request))
        context = self.get_serializer_context()
        if is_multipart(request):
            params: BaseSerializer[Any] = BundleUploadSerializer(data=data, context=context)
            params.is_valid(raise_exception=True)
            files = read_uploads(params.validated_data["files"])
            payload = _upload_payload(data, files, ("environment", "message", "namespace"))
        else:
            params = BundleTextSerializer(data=data, context=context)
            params.is_valid(raise_exception=True)
            files = [(params.validated_data["filename"], params.validated_data["text"].encode())]
            payload = {
                "environment": params.validated_data["environment"].name,
                "text": params.validated_data["text"],
                "filename": params.validated_data["filename"],
                "message": params.validated_data["message"],
                "namespace": params.validated_data["namespace"],
            }
        values = params.validated_data

        def produce() -> Response:
            drafts = drafts_from_bundle(
                author=signed_in_user(request),
                environment=values["environment"],
                files=files,
                message=values["message"],
                default_namespace=values["namespace"],
            )
            return Response(DraftSerializer(drafts, many=True, context=context).data, status=status.HTTP_201_CREATED)

        return idempotent(request, payload, produce)
