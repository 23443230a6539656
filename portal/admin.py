from django.contrib import admin, messages

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
    def revoke(self, request, queryset):
        for token in queryset:
            token_revoke(token=token, actor=request.user)
        messages.success(request, f"{queryset.count()} token(s) revoked.")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TaskStat)
class TaskStatAdmin(admin.ModelAdmin):
    list_display = ("task", "outcome", "count", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
