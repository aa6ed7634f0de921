"""Registry API: thin DRF views over `mcp.services.registry`.

Reads (list, read, health, tools) need any operator scope; writes need `admin:mcp` or a staff
login. `{ref}` in the path is a server's UUID or its name; anything else is a 404. Errors are
raised and rendered once, by `maestro.api_errors`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from maestro.errors import InvalidInput
from mcp.api.serializers import McpServerSerializer
from mcp.models import TAG_RE
from mcp.services import registry
from sessions_app.permissions import ReadOrAdmin

# PUT replaces the server: what it leaves out goes back to its default. Secrets are the exception:
# a client that PUTs back what it read (which never holds them) must not wipe the credentials.
PUT_DEFAULTS = {"description": "", "scopes": [], "tags": [], "enabled": True, "timeout_ms": 10_000, "tool_allow": [], "tool_deny": []}


def _flag(request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"{name}: use true or false", details={"field": name})


_FLAG = {"type": "string", "enum": ["true", "false", "1", "0"]}
PROBE_SCHEMA = {
    "type": "object",
    "properties": {
        "server": {"type": "string"}, "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": ["healthy", "unhealthy", "unreachable"]}, "latency_ms": {"type": "number"},
        "protocol_version": {"type": "string"}, "server_info": {"type": "object", "additionalProperties": True},
        "checked_at": {"type": "string", "format": "date-time"},
        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]},
    },
    "required": ["server", "id", "status", "checked_at"],
}
TOOLS_SCHEMA = {
    "type": "object",
    "properties": {
        "server": {"type": "string"}, "count": {"type": "integer"},
        "tools": {"type": "array", "items": {"type": "object", "additionalProperties": True, "properties": {"name": {"type": "string"}}}},
        "fetched_at": {"type": "string", "format": "date-time", "nullable": True}, "cached": {"type": "boolean"},
        "filtered_out": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["server", "count", "tools", "fetched_at", "cached", "filtered_out"],
}
_REF = OpenApiParameter("ref", type={"type": "string"}, location=OpenApiParameter.PATH, description="the server's UUID or name")


@extend_schema_view(
    list=extend_schema(operation_id="servers_list", parameters=[
        OpenApiParameter("tag", type={"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,31}$"}, description="whole tag"),
        OpenApiParameter("enabled", type=_FLAG), OpenApiParameter("search", type={"type": "string", "maxLength": 64}, description="in the name"),
    ]),
    create=extend_schema(operation_id="servers_create"),
    retrieve=extend_schema(operation_id="servers_read", parameters=[_REF]),
    update=extend_schema(operation_id="servers_replace", parameters=[_REF]),
    partial_update=extend_schema(operation_id="servers_update", parameters=[_REF]),
    destroy=extend_schema(operation_id="servers_delete", parameters=[_REF]),
    health=extend_schema(operation_id="servers_health", parameters=[_REF], responses={
        200: PROBE_SCHEMA, 503: {"oneOf": [PROBE_SCHEMA, {"$ref": "#/components/schemas/Error"}]},  # unhealthy, or the gateway's own failure
    }),
    tools=extend_schema(operation_id="servers_tools", parameters=[_REF, OpenApiParameter("refresh", type=_FLAG)], responses={200: TOOLS_SCHEMA}),
)
class McpServerViewSet(viewsets.GenericViewSet):
    serializer_class = McpServerSerializer
    permission_classes = [ReadOrAdmin]
    lookup_url_kwarg = "ref"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        params = self.request.query_params
        tag, search = params.get("tag"), params.get("search")
        if tag is not None and not TAG_RE.fullmatch(tag):
            raise InvalidInput("tag: not a valid tag", details={"field": "tag"})
        if search is not None and len(search) > 64:
            raise InvalidInput("search: at most 64 characters", details={"field": "search"})
        return registry.server_list(tag=tag, enabled=_flag(self.request, "enabled"), search=search)

    def get_object(self):
        server = registry.server_get(ref=self.kwargs[self.lookup_url_kwarg])
        self.check_object_permissions(self.request, server)
        return server

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def create(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = registry.server_create(data=body.validated_data)
        location = request.build_absolute_uri(f"{request.path.rstrip('/')}/{server.pk}")
        return Response(self.get_serializer(server).data, status=status.HTTP_201_CREATED, headers={"Location": location})

    def retrieve(self, request, ref: str):
        return Response(self.get_serializer(self.get_object()).data)

    def update(self, request, ref: str):
        server = self.get_object()
        body = self.get_serializer(server, data=request.data)
        body.is_valid(raise_exception=True)
        server = registry.server_update(server=server, data={**PUT_DEFAULTS, **body.validated_data})
        return Response(self.get_serializer(server).data)

    def partial_update(self, request, ref: str):
        server = self.get_object()
        body = self.get_serializer(server, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        server = registry.server_update(server=server, data=body.validated_data)
        return Response(self.get_serializer(server).data)

    def destroy(self, request, ref: str):
        registry.server_delete(server=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"])
    def health(self, request, ref: str):
        """A live MCP probe: 200 when healthy, 503 (unhealthy or unreachable) with the reason."""
        server = self.get_object()
        result = registry.server_health_check(server=server)
        return Response({"server": server.name, "id": str(server.pk), **result}, status=200 if result["status"] == "healthy" else 503)

    @action(detail=True, methods=["get"])
    def tools(self, request, ref: str):
        """The tools discovered over MCP (`tools/list`), cached for MCP_TOOLS_CACHE_TTL_SECONDS."""
        refresh = _flag(request, "refresh") or False
        server = self.get_object()
        before = server.tools_fetched_at
        tools = registry.server_tools_list(server=server, refresh=refresh)
        return Response({
            "server": server.name,
            "count": len(tools),
            "tools": tools,
            "fetched_at": server.tools_fetched_at.isoformat() if server.tools_fetched_at else None,
            "cached": before is not None and server.tools_fetched_at == before,
            # The server's own allow/deny filter: listed upstream, but not callable through the gateway.
            "filtered_out": [t["name"] for t in tools if not registry.tool_allowed(server=server, tool_name=t["name"])],
        })
