from django.contrib import admin, messages
from django.utils import timezone

from maestro import errors
from sessions_app.models import ApiKey, McpSession
from sessions_app.selectors import SessionRecord
from sessions_app.services import session_revoke


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


class SessionStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(McpSession)
class McpSessionAdmin(admin.ModelAdmin):
    """Persisted sessions (MCP_SESSIONS_PERSIST=true). Read-only: sessions are opened through the
    API, revoked with the action (which also publishes the revocation to Redis), and deleted by
    the cleanup once expired; deleting a revoked row by hand would make its revocation non-durable."""

    list_display = ("sid", "run_id", "scopes", "servers", "expires_at", "status", "created_by", "created_at")
    list_filter = (SessionStatusFilter,)
    search_fields = ("sid", "run_id", "created_by")
    ordering = ("-created_at",)
    readonly_fields = ("sid", "run_id", "scopes", "servers", "created_at", "expires_at", "revoked_at", "created_by", "status")
    fields = readonly_fields
    actions = ["revoke_sessions"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj):
        return SessionRecord.from_row(obj).status()

    @admin.action(description="Revoke selected sessions")
    def revoke_sessions(self, request, queryset):
        revoked = 0
        try:
            for row in queryset.filter(revoked_at__isnull=True):
                session_revoke(run_id=row.run_id, sid=row.sid)
                revoked += 1
        except errors.GatewayError as exc:
            self.message_user(request, f"revoked {revoked} session(s), then failed: {exc.message}", messages.ERROR)
            return
        self.message_user(request, f"revoked {revoked} session(s)", messages.SUCCESS)
