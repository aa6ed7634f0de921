"""The data plane's look-ups of registered servers and their tools: no query on the hot path.

Each process keeps resolved servers in memory, stamped with the registry version, a token in the
shared cache that every registry write replaces (`registry.registry_changed`). A process re-reads
that token at most once per `VERSION_CHECK_SECONDS`, so an edit made anywhere is seen by every
worker within about a second (at once in the process that made it), and a call pays neither a
database query nor, most of the time, a cache round trip. Tool lists are kept the same way, for at
most `LOCAL_TOOLS_SECONDS`, so a list another process refreshed reaches this one within seconds.

Misses are single-flight: after a start or a registry change, a thousand calls that miss at once
cause one load, not a thousand. Loads of rows run through `maestro.adb.orm` (the registry's own
synchronous functions, off the loop); tool discovery speaks MCP on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from maestro import adb, aredis
from maestro.errors import GatewayError
from mcp.services import registry
from mcp.services.registry import ServerSnapshot
from mcp.upstream.client import ServerSpec, get_client

logger = logging.getLogger("mcp.registry")
T = TypeVar("T")

VERSION_CHECK_SECONDS = 1.0
LOCAL_TOOLS_SECONDS = 5.0
LOCAL_MAX_ENTRIES = 10_000

_local: dict[str, tuple[object, ServerSnapshot, ServerSpec]] = {}
_local_tools: dict[str, tuple[object, float, dict[str, dict], list[dict]]] = {}
_version_seen: list = [None, 0.0]  # [token, monotonic time it was read]
_loading: dict[str, asyncio.Future] = {}


def local_cache_clear() -> None:
    _local.clear()
    _local_tools.clear()
    _version_seen[:] = [None, 0.0]


def version_recheck() -> None:
    """Read the registry version again on the next look-up (a list-change event arrived: the
    write that caused it may be newer than the token this process last read)."""
    _version_seen[1] = float("-inf")


async def _single_flight(key: str, load: Callable[[], Awaitable[T]]) -> T:
    pending = _loading.get(key)
    if pending is not None and pending.get_loop() is asyncio.get_running_loop():
        return await asyncio.shield(pending)
    future = asyncio.get_running_loop().create_future()
    _loading[key] = future
    try:
        result = await load()
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
        raise
    else:
        future.set_result(result)
        return result
    finally:
        if _loading.get(key) is future:
            del _loading[key]


async def _current_version():
    token, read_at = _version_seen
    if token is not None and time.monotonic() - read_at < VERSION_CHECK_SECONDS:
        return token
    return await _single_flight("version", _read_version)


async def _read_version():
    try:
        token = await aredis.cache_get(registry.VERSION_KEY)
        if token is None:
            token = uuid.uuid4().hex
            if not await aredis.cache_add(registry.VERSION_KEY, token, None):
                token = await aredis.cache_get(registry.VERSION_KEY)
    except aredis.CacheUnavailable:
        logger.warning("shared cache unavailable: registry look-ups go to the database")
        token = object()  # matches nothing: no stale answer while the cache is down
    _version_seen[:] = [token, time.monotonic()]
    return token


def _load_server(ref: str) -> tuple[ServerSnapshot, ServerSpec]:
    server = registry.server_get(ref=ref)
    return registry.server_snapshot(server), registry.server_spec(server)


async def server_resolve(*, ref: str) -> tuple[ServerSnapshot, ServerSpec]:
    """A server by UUID or name, for a call: from memory while the registry is unchanged."""
    version = await _current_version()
    hit = _local.get(ref)
    if hit is not None and hit[0] == version:
        return hit[1], hit[2]

    async def load() -> tuple[ServerSnapshot, ServerSpec]:
        snapshot, spec = await adb.orm(_load_server, ref)
        if len(_local) >= LOCAL_MAX_ENTRIES:
            _local.clear()
        _local[ref] = (version, snapshot, spec)
        return snapshot, spec

    return await _single_flight(f"server:{ref}", load)


async def server_tools(*, server: ServerSnapshot, spec: ServerSpec, refresh: bool = False) -> dict[str, dict]:
    """The server's tools by name: memory, then the shared cache, then the stored list while it
    is fresh, then the server itself over MCP. When discovery fails but a stored list exists, the
    stored list is served (and the failure logged)."""
    version = await _current_version()
    hit = _local_tools.get(server.id)
    if not refresh and hit is not None and hit[0] == version and time.monotonic() - hit[1] < LOCAL_TOOLS_SECONDS:
        return hit[2]

    async def load() -> dict[str, dict]:
        tools = await _tools_load(server, spec, refresh=refresh)
        index = {tool["name"]: tool for tool in tools if isinstance(tool, dict) and isinstance(tool.get("name"), str)}
        if len(_local_tools) >= LOCAL_MAX_ENTRIES:
            _local_tools.clear()
        _local_tools[server.id] = (version, time.monotonic(), index, tools)
        return index

    return await _single_flight(f"tools:{server.id}:{refresh}", load)


def _stored_tools(server_id: str) -> tuple[list[dict] | None, bool]:
    server = registry.server_get(ref=server_id)
    return server.tools_cache, registry.tools_fresh(server.tools_fetched_at)


async def _tools_load(server: ServerSnapshot, spec: ServerSpec, *, refresh: bool) -> list[dict]:
    key = registry.tools_key(server.id)
    if not refresh:
        try:
            cached = await aredis.cache_get(key)
        except aredis.CacheUnavailable:
            cached = None
        if isinstance(cached, list):
            return cached
    stored, fresh = await adb.orm(_stored_tools, server.id)
    if stored is not None and fresh and not refresh:
        return stored
    try:
        tools = await get_client().list_tools(server=spec, timeout_s=spec.timeout_ms / 1000)
    except GatewayError as exc:
        if stored is None:
            raise
        logger.warning("tool discovery failed; serving the previous list", extra={"server": server.name, "code": exc.code})
        return stored
    await adb.orm(registry.server_tools_store, server_id=server.id, tools=tools)
    try:
        from django.conf import settings

        await aredis.cache_set(key, tools, settings.MCP_TOOLS_CACHE_TTL_SECONDS)
    except aredis.CacheUnavailable:
        logger.warning("shared cache unavailable: tool list stored in the database only")
    return tools


async def servers_of_session(*, server_ids: tuple[str, ...]) -> list[tuple[ServerSnapshot, ServerSpec]]:
    """The servers a session may use: the ones it names that still exist, or every registered
    server when it names none; in name order."""
    if server_ids:
        found = []
        for server_id in server_ids:
            try:
                found.append(await server_resolve(ref=str(server_id)))
            except GatewayError:
                continue  # deleted since the session was opened
        return sorted(found, key=lambda pair: pair[0].name)
    version = await _current_version()
    hit = _local.get("*all*")
    if hit is not None and hit[0] == version:
        return hit[2]  # type: ignore[return-value]

    async def load():
        servers = await adb.orm(lambda: [(registry.server_snapshot(s), registry.server_spec(s)) for s in registry.server_list()])
        _local["*all*"] = (version, None, servers)  # type: ignore[assignment]
        return servers

    return await _single_flight("servers:all", load)


async def timeout_ceiling_ms() -> int:
    """The largest timeout_ms of any registered server (the model's default when none is)."""
    from mcp.models import McpServer

    servers = await servers_of_session(server_ids=())
    return max((snapshot.timeout_ms for snapshot, _ in servers), default=McpServer._meta.get_field("timeout_ms").default)


class RegistryDirectory:
    """sessions_app.services.ServerDirectory, answered from this catalog (installed by
    mcp.apps.McpConfig.ready): opening a session that names servers costs no query."""

    async def resolve(self, ref: str) -> str | None:
        try:
            snapshot, _ = await server_resolve(ref=ref)
        except GatewayError:
            return None
        return snapshot.id

    async def required_scopes(self) -> set[str]:
        return {scope for snapshot, _ in await servers_of_session(server_ids=()) for scope in snapshot.scopes}
