from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from portal.http import signed_in_user
from portal.models import ApiToken, TaskStat
from portal.services import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created by their owners in the portal (shown once); admins can only inspect or revoke."""

    list_display = ("name", "user", "key_id", "scopes", "enabled", "expires_at", "last_used_at")
    list_filter = ("enabled",)
    fields = ("user", "name", "key_id", "scopes", "enabled", "expires_at", "created_at", "last_used_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            token_revoke(token=token, actor=signed_in_user(request))
        messages.success(request, f"{queryset.count()} token(s) revoked.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaskStat)
class TaskStatAdmin(admin.ModelAdmin):
    list_display = ("task", "outcome", "count", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
