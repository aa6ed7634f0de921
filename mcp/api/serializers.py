"""Registry API shapes. Validation is strict and names the field; the rules themselves are the
model's validators (shared with the admin form). `auth_headers` is write-only: responses carry
only `has_auth_headers` and the header names."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mcp import models as M
from mcp.models import McpServer


def _django(validator):
    """Run a model validator and report its message as a DRF field error."""

    def run(value):
        try:
            validator(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from None

    return run


class StrictBooleanField(serializers.BooleanField):
    """JSON true/false only: DRF's default also takes "yes", 1 and "on", which hides client bugs."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError("must be true or false")
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("must be a whole number")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class StrictListField(serializers.ListField):
    """A JSON list of JSON strings (DRF alone would accept 1 as "1")."""

    def __init__(self, validator, **kwargs):
        super().__init__(child=StrictCharField(allow_blank=True, trim_whitespace=False), validators=[_django(validator)], **kwargs)


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}, "nullable": True, "writeOnly": True,
                      "description": "upstream auth headers: write-only, encrypted at rest, never returned"})
class HeadersField(serializers.Field):
    def to_internal_value(self, data):
        if data is None:
            return {}
        try:
            M.validate_headers(data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from None
        return dict(data)

    def to_representation(self, value):  # pragma: no cover - write_only, never rendered
        raise AssertionError("auth headers are write-only")


_ERROR = {"type": "object", "nullable": True, "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
HEALTH_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": [choice.value for choice in McpServer.Health]},
        "latency_ms": {"type": "number", "nullable": True}, "protocol_version": {"type": "string", "nullable": True},
        "server_info": {"type": "object", "nullable": True, "additionalProperties": True},
        "checked_at": {"type": "string", "format": "date-time", "nullable": True}, "error": _ERROR,
    },
}


class McpServerSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=64, validators=[_django(M.validate_name)], trim_whitespace=False)
    url = StrictCharField(max_length=M.URL_MAX, validators=[_django(M.validate_url)], trim_whitespace=False)
    description = StrictCharField(max_length=M.DESCRIPTION_MAX, required=False, allow_blank=True)
    scopes = StrictListField(M.validate_scopes, required=False)
    tags = StrictListField(M.validate_tags, required=False)
    enabled = StrictBooleanField(required=False)
    timeout_ms = StrictIntegerField(min_value=M.TIMEOUT_MIN_MS, max_value=M.TIMEOUT_MAX_MS, required=False)
    tool_allow = StrictListField(M.validate_globs, required=False)
    tool_deny = StrictListField(M.validate_globs, required=False)
    auth_headers = HeadersField(write_only=True, required=False, allow_null=True)
    has_auth_headers = serializers.BooleanField(read_only=True)
    health = serializers.SerializerMethodField()
    tools_count = serializers.SerializerMethodField()

    class Meta:
        model = McpServer
        fields = [
            "id", "name", "url", "description", "scopes", "tags", "enabled", "timeout_ms",
            "auth_headers", "has_auth_headers", "auth_header_names", "tool_allow", "tool_deny",
            "health", "tools_count", "tools_fetched_at", "created_at", "updated_at",
        ]
        # `name` is declared above, so DRF adds no UniqueValidator: a duplicate is the service's 409.
        read_only_fields = ["id", "auth_header_names", "tools_fetched_at", "created_at", "updated_at"]

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["send a JSON object"]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["unknown field"]})
        return super().to_internal_value(data)

    @extend_schema_field(HEALTH_SCHEMA)
    def get_health(self, server: McpServer) -> dict:
        return {
            "status": server.health_status,
            "latency_ms": server.health_latency_ms,
            "protocol_version": server.health_protocol_version or None,
            "server_info": server.health_server_info or None,
            "checked_at": server.health_checked_at.isoformat() if server.health_checked_at else None,
            "error": {"code": server.health_error_code, "message": server.health_error} if server.health_error_code else None,
        }

    @extend_schema_field({"type": "integer", "nullable": True})
    def get_tools_count(self, server: McpServer) -> int | None:
        return None if server.tools_cache is None else len(server.tools_cache)
