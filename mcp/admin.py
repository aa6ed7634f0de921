"""The registry console. Saves go through `mcp.services.registry` (validation, encryption, cache
invalidation); upstream auth headers are write-only here too: the form never renders a value."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from maestro.errors import GatewayError
from mcp.models import MAX_HEADERS, Invocation, McpServer, validate_headers
from mcp.services import registry

BADGE_COLORS = {"healthy": "#2e7d32", "unhealthy": "#c62828", "unreachable": "#6a1b9a", "unknown": "#757575"}


class CommaListField(forms.CharField):
    """A list of short strings edited as "a, b, c" (the model validators check each entry)."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(value)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        return [item.strip() for item in (value or "").split(",") if item.strip()]


class SecretTextarea(forms.Textarea):
    """Never renders a value, not even the one just submitted when the form has an error."""

    def format_value(self, value):
        return None


class McpServerForm(forms.ModelForm):
    scopes = CommaListField(required=False, help_text="Scopes a session must hold to use this server, comma-separated.")
    tags = CommaListField(required=False, help_text="Comma-separated, lowercase.")
    tool_allow = CommaListField(required=False, help_text="Glob patterns of callable tools; empty allows all.")
    tool_deny = CommaListField(required=False, help_text="Glob patterns of tools never callable (wins over allow).")
    auth_headers = forms.CharField(
        required=False,
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        label="Set upstream auth headers",
        help_text=f"One 'Name: value' per line (at most {MAX_HEADERS}). Write-only: stored encrypted and never shown. "
        "Leave empty to keep the current headers.",
    )
    clear_auth_headers = forms.BooleanField(required=False, label="Remove all upstream auth headers")

    class Meta:
        model = McpServer
        fields = ["name", "url", "description", "enabled", "timeout_ms", "scopes", "tags", "tool_allow", "tool_deny"]

    def clean_url(self):
        url = self.cleaned_data.get("url")
        if url and (self.instance._state.adding or "url" in self.changed_data):
            try:
                registry.server_destination_check(url=url)
            except GatewayError as exc:
                raise forms.ValidationError(exc.message.removeprefix("url: ")) from None
        return url

    def clean_auth_headers(self):
        text = self.cleaned_data.get("auth_headers") or ""
        if not text.strip():
            return None
        headers = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise forms.ValidationError(f"line {number}: write 'Name: value'")
            headers[name.strip()] = value.strip()
        validate_headers(headers)
        return headers

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_auth_headers") and cleaned.get("auth_headers"):
            raise forms.ValidationError("either set new headers or remove them, not both")
        return cleaned


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        tags = sorted({tag for tags in McpServer.objects.values_list("tags", flat=True)[:1000] for tag in (tags or [])})
        return [(tag, tag) for tag in tags[:200]]

    def queryset(self, request, queryset):
        return queryset.filter(tag_index__contains=f"|{self.value()}|") if self.value() else queryset


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    form = McpServerForm
    list_display = ("name", "health_badge", "url", "enabled", "tag_list", "health_checked_at", "tools_count")
    list_filter = ("enabled", "health_status", TagFilter)
    search_fields = ("name", "url", "description")
    ordering = ("name",)
    actions = ["check_health", "refresh_tools", "enable_servers", "disable_servers"]
    readonly_fields = (
        "id", "credentials", "health_badge", "health_latency_ms", "health_protocol_version", "health_server_info",
        "health_checked_at", "health_error_code", "health_error", "tools_fetched_at", "tools_table", "created_at", "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "name", "url", "description", "enabled", "timeout_ms", "tags")}),
        ("Access", {"fields": ("scopes", "tool_allow", "tool_deny")}),
        ("Upstream credentials (write-only)", {"fields": ("credentials", "auth_headers", "clear_auth_headers")}),
        ("Last health check", {"fields": ("health_badge", "health_latency_ms", "health_protocol_version", "health_server_info", "health_checked_at", "health_error_code", "health_error")}),
        ("Tools (cached, read-only)", {"fields": ("tools_fetched_at", "tools_table")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
    )

    # --- display ---------------------------------------------------------------------------

    @admin.display(description="health", ordering="health_status")
    def health_badge(self, obj: McpServer):
        color = BADGE_COLORS.get(obj.health_status, "#757575")
        title = obj.health_error or (f"{obj.health_latency_ms} ms, {obj.health_protocol_version}" if obj.health_latency_ms is not None else "")
        return format_html(
            '<span title="{}" style="background:{};color:#fff;padding:1px 8px;border-radius:8px;font-size:11px">{}</span>',
            title, color, obj.health_status,
        )

    @admin.display(description="tags")
    def tag_list(self, obj: McpServer):
        return ", ".join(obj.tags or []) or "—"

    @admin.display(description="tools")
    def tools_count(self, obj: McpServer):
        return "—" if obj.tools_cache is None else len(obj.tools_cache)

    @admin.display(description="current headers")
    def credentials(self, obj: McpServer):
        if not obj.auth_header_names:
            return "none"
        return ", ".join(obj.auth_header_names) + " (values hidden)"

    @admin.display(description="tools")
    def tools_table(self, obj: McpServer):
        if obj.tools_cache is None:
            return "not fetched yet: use the “Refresh tools” action"
        rows = format_html_join(
            "", "<tr><td><code>{}</code></td><td>{}</td><td><pre style='margin:0;white-space:pre-wrap'>{}</pre></td></tr>",
            (
                (t.get("name", "?"), str(t.get("description") or "")[:300], json.dumps(t.get("inputSchema", {}), indent=1)[:2000])
                for t in obj.tools_cache
            ),
        )
        return format_html("<table><tr><th>name</th><th>description</th><th>input schema</th></tr>{}</table>", rows)

    # --- saving through the service ---------------------------------------------------------

    def save_model(self, request, obj, form, change):
        data = {}
        if form.cleaned_data.get("clear_auth_headers"):
            data["auth_headers"] = {}
        elif form.cleaned_data.get("auth_headers"):
            data["auth_headers"] = form.cleaned_data["auth_headers"]
        reach_changed = change and ("url" in form.changed_data or "auth_headers" in data)
        try:
            registry.server_save(server=obj, data=data, created=not change, reach_changed=reach_changed)
        except GatewayError as exc:  # a race the form could not see (e.g. the name was just taken)
            self.message_user(request, exc.message, messages.ERROR)
            raise

    def delete_model(self, request, obj):
        registry.server_delete(server=obj)

    def delete_queryset(self, request, queryset):
        for server in queryset:
            registry.server_delete(server=server)

    # --- actions ----------------------------------------------------------------------------

    @admin.action(description="Check health now")
    def check_health(self, request, queryset):
        results = registry.servers_probe(servers=queryset)
        healthy = sorted(name for name, status in results.items() if status == "healthy")
        failing = sorted(f"{name} ({status})" for name, status in results.items() if status != "healthy")
        if healthy:
            self.message_user(request, f"healthy: {', '.join(healthy)}", messages.SUCCESS)
        if failing:
            self.message_user(request, f"not healthy: {', '.join(failing)}", messages.WARNING)

    @admin.action(description="Refresh tools")
    def refresh_tools(self, request, queryset):
        for server in queryset:
            try:
                tools = registry.server_tools_list(server=server, refresh=True)
            except GatewayError as exc:
                self.message_user(request, f"{server.name}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{server.name}: {len(tools)} tools", messages.SUCCESS)

    @admin.action(description="Enable")
    def enable_servers(self, request, queryset):
        count = registry.server_set_enabled(servers=queryset, enabled=True)
        self.message_user(request, f"enabled {count} server(s)", messages.SUCCESS)

    @admin.action(description="Disable")
    def disable_servers(self, request, queryset):
        count = registry.server_set_enabled(servers=queryset, enabled=False)
        self.message_user(request, f"disabled {count} server(s)", messages.SUCCESS)


@admin.register(Invocation)
class InvocationAdmin(admin.ModelAdmin):
    """Evidence is read-only everywhere: the admin can look, filter and search, never edit."""

    list_display = ("created_at", "run_id", "seq", "server_name", "tool", "status", "error_code", "latency_ms", "transport")
    list_filter = ("status", "server_name", "transport", "is_error")
    search_fields = ("run_id", "session_id", "tool", "server_name")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="latency (ms)")
    def latency_ms(self, obj):
        return round(obj.latency_us / 1000, 2)
