"""Django admin for every model. Changes made here are audited like any other; history is read-only."""
from django.contrib import admin
from django.db import transaction
from django.forms.models import model_to_dict

from policies.models import AuditEvent, Environment, Membership, NamespaceOwnership, Policy, PolicyRevision, Team
from policies.services.audit import audit_record

_SECRET_FIELDS = {"api_token"}


def _snapshot(obj) -> dict:
    data = model_to_dict(obj)
    return {key: ("<set>" if value else "") if key in _SECRET_FIELDS else value for key, value in data.items()}


class AuditedAdmin(admin.ModelAdmin):
    """Every save and delete through the admin writes its audit row in the same transaction."""

    def save_model(self, request, obj, form, change):
        label = obj._meta.model_name
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                action=f"admin.{label}.{'changed' if change else 'created'}", actor=request.user, obj=obj,
                before=before, after=_snapshot(obj),
            )

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_record(action=f"admin.{obj._meta.model_name}.deleted", actor=request.user, obj=obj,
                         before=_snapshot(obj))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Environment)
class EnvironmentAdmin(AuditedAdmin):
    list_display = ("name", "display_name", "order", "is_production", "auth_mode", "api_url", "cluster_reachable")
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
