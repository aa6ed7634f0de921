from django.contrib import admin, messages
from django.utils import timezone

from sessions_app.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "key_prefix", "scopes", "revoked", "created_at", "last_used_at")
    list_filter = ("revoked",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    fields = ("name", "scopes", "prefix", "revoked", "revoked_at", "created_at", "last_used_at")
    actions = ["revoke_keys"]

    def has_add_permission(self, request):
        # Keys are created with `manage.py mcp_apikey create`, which shows the key once.
        return False

    @admin.display(description="key")
    def key_prefix(self, obj):
        return f"mcpk_{obj.prefix}_…"

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        count = queryset.filter(revoked=False).update(revoked=True, revoked_at=timezone.now())
        self.message_user(request, f"revoked {count} key(s)", messages.SUCCESS)
