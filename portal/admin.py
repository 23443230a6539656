from django.contrib import admin

from portal.models import ApiToken, TaskStat


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created by their owners in the portal (shown once); admins can only inspect or revoke."""

    list_display = ("name", "user", "key_id", "scopes", "enabled", "expires_at", "last_used_at")
    list_filter = ("enabled",)
    readonly_fields = ("user", "name", "key_id", "scopes", "expires_at", "created_at", "last_used_at")
    fields = ("user", "name", "key_id", "scopes", "enabled", "expires_at", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False


@admin.register(TaskStat)
class TaskStatAdmin(admin.ModelAdmin):
    list_display = ("task", "outcome", "count", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
