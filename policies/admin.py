"""Django admin for every model. Changes made here are audited like any other; history is read-only."""

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms.models import model_to_dict
from django.http import HttpRequest

from policies.models import AuditEvent, Environment, Membership, NamespaceOwnership, Policy, PolicyRevision, Team
from policies.services.audit import audit_record

_SECRET_FIELDS = {"api_token", "secret"}


def _plain(value: Any) -> Any:
    """JSON-storable: related objects (a team's members, many-to-many fields) by primary key."""
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, (list, tuple, set, QuerySet)):
        return sorted((_plain(item) for item in value), key=str)
    return value


def _snapshot(obj: Model) -> dict[str, Any]:
    data = model_to_dict(obj)
    return {key: ("<set>" if value else "") if key in _SECRET_FIELDS else _plain(value) for key, value in data.items()}


class AuditedAdmin(admin.ModelAdmin):
    """Every save and delete through the admin writes its audit row in the same transaction."""

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        label = obj._meta.model_name
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                action=f"admin.{label}.{'changed' if change else 'created'}",
                actor=request.user,
                obj=obj,
                before=before,
                after=_snapshot(obj),
            )

    def delete_model(self, request: Any, obj: Any) -> None:
        with transaction.atomic():
            audit_record(
                action=f"admin.{obj._meta.model_name}.deleted", actor=request.user, obj=obj, before=_snapshot(obj)
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: Any, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Environment)
class EnvironmentAdmin(AuditedAdmin):
    list_display = (
        "name",
        "display_name",
        "order",
        "is_production",
        "auth_mode",
        "api_url",
        "cluster_reachable",
        "foreign_controllers",
    )
    readonly_fields = ("cluster_reachable", "cluster_version", "cluster_error", "cluster_checked_at", "last_import_at")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ("name", "slug", "is_security")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ("user", "team", "role")
    list_filter = ("role", "team")


@admin.register(NamespaceOwnership)
class NamespaceOwnershipAdmin(AuditedAdmin):
    list_display = ("environment", "namespace", "team")
    list_filter = ("environment", "team")


@admin.register(Policy)
class PolicyAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "namespace", "environment", "live_state", "current_revision")
    list_filter = ("environment", "kind", "live_state")
    search_fields = ("name", "namespace")
    list_select_related = ("environment", "current_revision")


@admin.register(PolicyRevision)
class PolicyRevisionAdmin(ReadOnlyAdmin):
    list_display = ("policy", "number", "source", "author", "created_at", "content_hash")
    list_filter = ("source",)
    list_select_related = ("policy__environment", "author")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "created_at", "actor_name", "action", "object_repr", "environment")
    list_filter = ("action", "environment")
    search_fields = ("object_repr", "actor_name", "request_id")


# --- governance: guardrails, change windows, notifications ---------------------------------------

from django import forms  # noqa: E402 - grouped with the registrations below

from policies.models import (  # noqa: E402
    ChangeWindow,
    Guardrail,
    GuardrailOverride,
    NotificationChannel,
    NotificationDelivery,
    NotificationPreference,
)


@admin.register(Guardrail)
class GuardrailAdmin(AuditedAdmin):
    list_display = ("name", "enforcement", "builtin_key", "production_only", "enabled", "updated_at")
    list_filter = ("enforcement", "enabled", "production_only")
    search_fields = ("name", "description", "expression")
    readonly_fields = ("builtin_key", "created_by", "created_at", "updated_at")

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(GuardrailOverride)
class GuardrailOverrideAdmin(ReadOnlyAdmin):
    list_display = ("guardrail", "subject_type", "subject_id", "admin", "created_at")
    list_filter = ("guardrail",)
    list_select_related = ("guardrail", "admin")


@admin.register(ChangeWindow)
class ChangeWindowAdmin(AuditedAdmin):
    list_display = (
        "name",
        "environment",
        "kind",
        "weekdays",
        "start_time",
        "end_time",
        "end_weekday",
        "timezone",
        "starts_at",
        "ends_at",
        "enabled",
    )
    list_filter = ("environment", "kind", "enabled")
    list_select_related = ("environment",)
    fieldsets = (
        (None, {"fields": ("environment", "name", "kind", "enabled")}),
        (
            "Recurring",
            {
                "fields": ("weekdays", "start_time", "end_time", "end_weekday", "timezone"),
                "description": "Weekdays as a JSON list, 0 = Monday … 6 = Sunday, e.g. [0, 1, 2, 3, 4].",
            },
        ),
        ("One-off", {"fields": ("starts_at", "ends_at")}),
    )


class NotificationChannelAdminForm(forms.ModelForm):
    """Never shows the stored webhook secret; a blank field keeps it."""

    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhook HMAC key. Leave blank to keep the current one.",
    )

    class Meta:
        model = NotificationChannel
        fields = "__all__"

    def clean_secret(self) -> str:
        return self.cleaned_data.get("secret") or (self.instance.secret if self.instance.pk else "")


@admin.register(NotificationChannel)
class NotificationChannelAdmin(AuditedAdmin):
    form = NotificationChannelAdminForm
    list_display = ("name", "kind", "team", "user", "enabled")
    list_filter = ("kind", "enabled")
    list_select_related = ("team", "user")
    search_fields = ("name", "target")


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(AuditedAdmin):
    list_display = ("user", "event", "muted")
    list_filter = ("event", "muted")
    list_select_related = ("user",)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event", "channel", "status", "attempts", "last_status_code", "delivered_at")
    list_filter = ("status", "event")
    list_select_related = ("channel",)


# --- change requests, reviews, approval rules; drafts and idempotency keys (read-only) ---------------

from policies.models import (  # noqa: E402
    ApprovalRule,
    ChangeItem,
    ChangeRequest,
    Draft,
    IdempotencyKey,
    Plan,
    Review,
    ReviewComment,
)


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(AuditedAdmin):
    """Editable by admins (also at /approval-rules/); every save is audited."""

    list_display = (
        "__str__",
        "team",
        "environment",
        "kind",
        "required_approvals",
        "security_approval",
        "extra_production_approval",
        "updated_at",
    )
    list_filter = ("environment", "kind", "security_approval")
    list_select_related = ("environment",)
    readonly_fields = ("created_at", "updated_at")


class ChangeItemInline(admin.TabularInline):
    model = ChangeItem
    extra = 0
    can_delete = False
    fields = ("operation", "kind", "namespace", "name", "base_revision", "content_hash", "error_count")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    """Read-only: a change moves only through its workflow (the change page or the API)."""

    list_display = ("__str__", "environment", "state", "author", "created_at", "submitted_at", "approved_at")
    list_filter = ("state", "environment")
    search_fields = ("title", "description", "author__username")
    list_select_related = ("environment", "author")
    inlines = [ChangeItemInline]


@admin.register(ChangeItem)
class ChangeItemAdmin(ReadOnlyAdmin):
    list_display = ("change", "operation", "kind", "namespace", "name", "content_hash")
    list_filter = ("operation", "kind")
    search_fields = ("name", "namespace")
    list_select_related = ("change",)


@admin.register(Plan)
class PlanAdmin(ReadOnlyAdmin):
    list_display = ("change", "computed_at", "status", "content_fingerprint", "duration_ms")
    list_filter = ("status",)
    list_select_related = ("change",)


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ("change", "reviewer", "verdict", "created_at", "voided_at", "voided_reason")
    list_filter = ("verdict",)
    list_select_related = ("change", "reviewer")


@admin.register(ReviewComment)
class ReviewCommentAdmin(ReadOnlyAdmin):
    list_display = ("change", "author", "item", "line", "created_at", "resolved_at")
    list_select_related = ("change", "author", "item")


@admin.register(Draft)
class DraftAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "author", "operation", "error_count", "warning_count", "updated_at")
    list_filter = ("environment", "operation", "kind")
    search_fields = ("name", "namespace", "author__username")
    list_select_related = ("environment", "author")


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ("key", "user", "response_status", "created_at")
    list_select_related = ("user",)
    search_fields = ("key", "user__username")


# --- single sign-on and service accounts -------------------------------------------------------------

from policies.models import ExternalIdentity, GroupMapping, ServiceAccount  # noqa: E402


@admin.register(GroupMapping)
class GroupMappingAdmin(AuditedAdmin):
    """Which identity-provider group gives which role in which team (applied at every SSO login)."""

    list_display = ("group", "team", "role")
    list_filter = ("team", "role")
    search_fields = ("group",)
    list_select_related = ("team",)


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(ReadOnlyAdmin):
    list_display = ("subject", "issuer", "user", "groups", "last_login_at")
    search_fields = ("subject", "user__username")
    list_select_related = ("user",)


@admin.register(ServiceAccount)
class ServiceAccountAdmin(ReadOnlyAdmin):
    """Created and revoked through the service-account API, the page of the team or manage.py."""

    list_display = ("user", "team", "created_by", "created_at", "revoked_at")
    list_select_related = ("user", "team", "created_by")
