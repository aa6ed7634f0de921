"""The registry of upstream MCP servers: create, update, delete, live health and tool discovery
(the control plane, synchronous). The data plane's cached look-ups of the same servers live in
`mcp.services.catalog`; every write here ends in `registry_changed`, which tells them.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, close_old_connections, transaction
from django.utils import timezone

from maestro.errors import Conflict, GatewayError, InvalidInput, NotFound
from mcp.models import McpServer
from mcp.policy import tool_filter_refusal
from mcp.secrets import decrypt_headers, encrypt_headers
from mcp.services.changes import list_changed_publish
from mcp.upstream.client import ServerSpec, sync_call
from mcp.upstream.destinations import DestinationRefused, destination_check_url
from mcp.upstream.errors import UNREACHABLE_CODES

logger = logging.getLogger("mcp.registry")

WRITABLE = ("name", "url", "description", "scopes", "tags", "enabled", "timeout_ms", "tool_allow", "tool_deny")
CONFIG_FIELDS = ("auth_headers_encrypted", "auth_header_names", "tools_cache", "tools_fetched_at", "tag_index", "updated_at")
VERSION_KEY = "mcp:registry:version"
PROBE_WORKERS = 8


@dataclass(frozen=True)
class ServerSnapshot:
    """An immutable copy of a server's policy-relevant fields, safe to share between threads."""

    id: str
    name: str
    url: str
    enabled: bool
    scopes: tuple[str, ...]
    tags: tuple[str, ...]
    tool_allow: tuple[str, ...]
    tool_deny: tuple[str, ...]
    timeout_ms: int


# --- reads ------------------------------------------------------------------------------------


def server_get(*, ref: str) -> McpServer:
    """By UUID or by name; anything else (a malformed id included) is simply not found."""
    lookup = _ref_lookup(ref)
    if lookup is None:
        raise NotFound("no MCP server with that id or name", code="server_not_found")
    try:
        return McpServer.objects.get(**lookup)
    except McpServer.DoesNotExist:
        raise NotFound("no MCP server with that id or name", code="server_not_found") from None


def server_list(*, tag: str | None = None, enabled: bool | None = None, search: str | None = None, health: str | None = None):
    servers = McpServer.objects.all()
    if tag:
        servers = servers.filter(tag_index__contains=f"|{tag}|")
    if enabled is not None:
        servers = servers.filter(enabled=enabled)
    if health:
        servers = servers.filter(health_status=health)
    if search:
        servers = servers.filter(name__icontains=search)
    return servers.order_by("name")


def server_spec(server: McpServer) -> ServerSpec:
    return ServerSpec(
        id=str(server.id),
        name=server.name,
        url=server.url,
        headers=decrypt_headers(server.auth_headers_encrypted, server_id=server.id),
        timeout_ms=server.timeout_ms,
        max_response_bytes=settings.MCP_UPSTREAM_MAX_RESPONSE_BYTES,
    )


def tool_allowed(*, server, tool_name: str) -> bool:
    """The server's own tool filter (the policy's rule: a deny pattern wins; an empty allow list
    allows every tool)."""
    return tool_filter_refusal(tool=tool_name, tool_allow=server.tool_allow, tool_deny=server.tool_deny) is None


# --- writes -----------------------------------------------------------------------------------


def server_create(*, data: dict) -> McpServer:
    return server_save(server=McpServer(id=uuid.uuid4()), data=data, created=True)


def server_update(*, server: McpServer, data: dict) -> McpServer:
    """Partial: only the keys present change. `auth_headers` replaces the whole set ({} clears)."""
    reach_changed = ("url" in data and data["url"] != server.url) or "auth_headers" in data
    return server_save(server=server, data=data, created=False, reach_changed=reach_changed)


def server_save(*, server: McpServer, data: dict, created: bool, reach_changed: bool = False) -> McpServer:
    """Apply `data`, validate, save, and invalidate caches. The admin form, which has already set
    the plain fields on its instance, calls this with just the secrets."""
    _apply(server, data)
    if reach_changed:
        # Tools discovered at the old address (or with the old credentials) say nothing about the new.
        server.tools_cache, server.tools_fetched_at = None, None
    return _save(server, created=created, check_destination=created or reach_changed)


def server_destination_check(*, url: str) -> None:
    """The destination policy at registration (mcp.upstream.destinations): InvalidInput naming
    `url` when the gateway may not connect there. Every connection is checked again anyway."""
    try:
        destination_check_url(url)
    except DestinationRefused as exc:
        raise InvalidInput(f"url: {exc.message}", code="invalid_request", details={"field": "url"}) from None


def server_delete(*, server: McpServer) -> None:
    server_id = server.pk
    server.delete()
    registry_changed(server_id=server_id)


def server_set_enabled(*, servers, enabled: bool) -> int:
    ids = list(servers.values_list("pk", flat=True))
    count = McpServer.objects.filter(pk__in=ids).update(enabled=enabled, updated_at=timezone.now())
    for server_id in ids:
        registry_changed(server_id=server_id)
    return count


def server_enable(*, server: McpServer, enabled: bool) -> None:
    server_set_enabled(servers=McpServer.objects.filter(pk=server.pk), enabled=enabled)
    server.enabled = enabled


def registry_changed(*, server_id) -> None:
    """Every write ends here: drop this process's copies, and tell other processes."""
    local_cache_clear()
    cache.delete(tools_key(server_id))
    cache.set(VERSION_KEY, uuid.uuid4().hex, None)
    # Clients of the MCP endpoint with an open stream hear that their lists may have changed.
    list_changed_publish(server_id=server_id)


def local_cache_clear() -> None:
    """Forget this process's resolved servers (tests call it between cases, too)."""
    from mcp.services import catalog, listing

    catalog.local_cache_clear()
    listing.local_cache_clear()


def _apply(server: McpServer, data: dict) -> None:
    for key in WRITABLE:
        if key in data:
            setattr(server, key, data[key])
    if "auth_headers" in data:
        headers = data["auth_headers"] or {}
        server.auth_headers_encrypted = encrypt_headers(headers, server_id=server.id)
        server.auth_header_names = sorted(headers)


def _save(server: McpServer, *, created: bool, check_destination: bool) -> McpServer:
    try:
        server.full_clean(validate_unique=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidInput(f"{field}: {messages[0]}", code="invalid_request", details={"field": field}) from None
    if check_destination:
        server_destination_check(url=server.url)
    if McpServer.objects.filter(name=server.name).exclude(pk=server.pk).exists():
        raise Conflict(f"an MCP server named {server.name!r} already exists", code="server_exists")
    try:
        with transaction.atomic():
            if created:
                server.save(force_insert=True)
            else:
                # Only the configuration: a health probe may have stored its result meanwhile.
                server.save(update_fields=[*WRITABLE, *CONFIG_FIELDS])
    except IntegrityError:
        raise Conflict(f"an MCP server named {server.name!r} already exists", code="server_exists") from None
    except DatabaseError:  # update_fields matched no row: deleted while being edited
        raise NotFound("no MCP server with that id or name", code="server_not_found") from None
    registry_changed(server_id=server.pk)
    return server


# --- health and tools -------------------------------------------------------------------------


def server_health_check(*, server: McpServer) -> dict:
    """A live MCP probe within the server's timeout; the outcome is stored on the server."""
    checked_at = timezone.now()
    try:
        spec = server_spec(server)
        probe = sync_call("probe", server=spec, timeout_s=spec.timeout_ms / 1000)
    except GatewayError as exc:
        unreachable = exc.code in UNREACHABLE_CODES or isinstance(exc, DestinationRefused)
        status = McpServer.Health.UNREACHABLE if unreachable else McpServer.Health.UNHEALTHY
        fields = {
            "health_status": status, "health_latency_ms": None, "health_checked_at": checked_at,
            "health_error_code": exc.code, "health_error": exc.message[:500],
        }
        result = {"status": status.value, "checked_at": checked_at.isoformat(), "error": {"code": exc.code, "message": exc.message}}
    else:
        fields = {
            "health_status": McpServer.Health.HEALTHY, "health_latency_ms": probe.latency_ms, "health_checked_at": checked_at,
            "health_protocol_version": probe.protocol_version, "health_server_info": _bounded_info(probe.server_info),
            "health_error_code": "", "health_error": "",
        }
        result = {
            "status": "healthy", "latency_ms": probe.latency_ms, "protocol_version": probe.protocol_version,
            "server_info": fields["health_server_info"], "checked_at": checked_at.isoformat(),
        }
    # update(), not save(): a probe must not overwrite an edit made while it ran, nor bump updated_at.
    McpServer.objects.filter(pk=server.pk).update(**fields)
    for key, value in fields.items():
        setattr(server, key, value)
    return result


def server_tools_list(*, server, refresh: bool = False) -> list[dict]:
    """The server's tools (a model or a snapshot): the stored list while it is fresh, else
    discovered over MCP and stored. A model passed in gets `tools_cache`/`tools_fetched_at` set."""
    model = server if isinstance(server, McpServer) else server_get(ref=str(server.id))
    if not refresh and model.tools_cache is not None and tools_fresh(model.tools_fetched_at):
        return model.tools_cache
    spec = server_spec(model)
    tools = sync_call("list_tools", server=spec, timeout_s=spec.timeout_ms / 1000)
    model.tools_cache, model.tools_fetched_at = tools, server_tools_store(server_id=model.pk, tools=tools)
    try:
        cache.set(tools_key(model.pk), tools, settings.MCP_TOOLS_CACHE_TTL_SECONDS)
    except Exception:
        logger.warning("shared cache unavailable: tool list stored in the database only", exc_info=True)
    local_cache_clear()
    return tools


def tools_fresh(fetched_at) -> bool:
    """Whether a stored tool list is recent enough to serve without asking the server again."""
    return fetched_at is not None and fetched_at > timezone.now() - timedelta(seconds=settings.MCP_TOOLS_CACHE_TTL_SECONDS)


def server_tools_store(*, server_id, tools: list[dict]):
    """Store a freshly discovered tool list on the server; returns when it was fetched. A list that
    differs from the stored one is announced (an upstream changed its tools)."""
    fetched_at = timezone.now()
    before = McpServer.objects.filter(pk=server_id).values_list("tools_cache", flat=True).first()
    McpServer.objects.filter(pk=server_id).update(tools_cache=tools, tools_fetched_at=fetched_at)
    if before is not None and before != tools:
        list_changed_publish(server_id=server_id, lists=("tools",))
    return fetched_at


def servers_for_session(*, server_ids) -> list[ServerSnapshot]:
    """Snapshots of the servers a session names (ids), or of every server when it names none."""
    servers = McpServer.objects.order_by("name")
    if server_ids:
        servers = servers.filter(pk__in=[found for s in server_ids if (found := _uuid_or_none(s))])
    return [server_snapshot(server) for server in servers]


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def servers_probe_all() -> dict[str, str]:
    return servers_probe(servers=McpServer.objects.filter(enabled=True))


def servers_probe(*, servers) -> dict[str, str]:
    """Probe servers a few at a time, so one slow server does not delay the rest: {name: status}."""
    servers = list(servers)

    def probe(server: McpServer) -> tuple[str, str]:
        close_old_connections()
        try:
            return server.name, server_health_check(server=server)["status"]
        except Exception:
            logger.exception("health probe crashed", extra={"server": server.name})
            return server.name, "error"
        finally:
            from django.db import connection

            connection.close()  # a pool thread must not keep a database connection open

    if not servers:
        return {}
    with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(servers)), thread_name_prefix="mcp-probe") as pool:
        return dict(pool.map(probe, servers))


def server_snapshot(server: McpServer) -> ServerSnapshot:
    return ServerSnapshot(
        id=str(server.id), name=server.name, url=server.url, enabled=server.enabled, scopes=tuple(server.scopes),
        tags=tuple(server.tags), tool_allow=tuple(server.tool_allow), tool_deny=tuple(server.tool_deny), timeout_ms=server.timeout_ms,
    )


def _ref_lookup(ref: str) -> dict | None:
    if not isinstance(ref, str) or not ref or len(ref) > 64:
        return None
    try:
        return {"pk": uuid.UUID(ref)}
    except ValueError:
        pass
    return {"name": ref} if ref == ref.strip() and ref.isprintable() else None


def tools_key(server_id) -> str:
    return f"mcp:tools:{server_id}"


def _bounded_info(info: dict) -> dict:
    """serverInfo is upstream-controlled: keep the identifying strings, short."""
    keep = ("name", "title", "version", "description", "websiteUrl")
    return {k: str(info[k])[:200] for k in keep if isinstance(info.get(k), (str, int, float))}
