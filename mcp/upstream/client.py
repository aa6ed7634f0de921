"""The gateway's MCP client to upstream servers: one per event loop (a worker process), over one
pooled HTTP/1.1 client (http11). Asynchronous only: synchronous callers (the registry's health
probe and tool discovery, run from Django views, Celery and commands) go through maestro.bridge.

- Negotiation, newest first: `server/discover` at 2026-07-28 (sessionless, per-request `_meta`);
  anything that is not a positive answer falls back to `initialize` (2025-11-25, and whatever older
  revision the server settles on). Network failures are not a verdict and propagate. The outcome
  is kept per server URL in this process (a minute) and in the shared cache (five minutes), so the
  hot path never repeats a handshake; a health probe always negotiates afresh and refreshes both.
- Session-based servers: one upstream MCP session per (server, Maestro session key). Its
  `Mcp-Session-Id` and revision live in the shared cache, so any worker or replica continues it.
  A 404 means the upstream forgot it: re-initialize once and retry. Calls without a session key
  (listing tools, probes) use a throwaway session that is DELETEd afterwards.
- JSON-RPC ids are a random per-process prefix plus a process-wide counter: unique within any
  upstream session even when several workers share it (the SDK never answers a duplicate id).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from django.conf import settings

from opentelemetry.trace import SpanKind

from maestro import aredis, bridge, telemetry
from maestro.bridge import per_loop
from maestro.errors import Unavailable
from mcp.upstream import errors as E
from mcp.upstream import http11
from mcp.upstream import protocol as P
from mcp.upstream import wire

logger = logging.getLogger("mcp.upstream")
T = TypeVar("T")

NEGOTIATION_LOCAL_TTL = 60.0
NEGOTIATION_SHARED_TTL = 300
SESSION_DELETE_TIMEOUT_S = 2.0
MAX_TOOL_PAGES = 100


@dataclass(frozen=True)
class ServerSpec:
    """What the client needs to reach one registered server; `headers` are decrypted secrets."""

    id: str
    name: str
    url: str
    headers: dict[str, str] = field(repr=False, hash=False, compare=False)
    timeout_ms: int
    max_response_bytes: int


@dataclass(frozen=True)
class ProbeResult:
    protocol_version: str
    server_info: dict
    latency_ms: float


@dataclass(frozen=True)
class Negotiated:
    version: str
    modern: bool  # 2026-07-28: no handshake, no session
    sessions: bool  # session-based and the server issues Mcp-Session-Id


@dataclass(frozen=True)
class _Session:
    sid: str | None
    version: str


class UpstreamClient:
    def __init__(self, *, http: http11.Http11Pool | None = None):
        # Redirects are never followed (http11): one could carry the auth headers to another host.
        self._http = http or http11.Http11Pool(max_connections=settings.MCP_UPSTREAM_MAX_CONNECTIONS, resolver=_resolver())
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6)
        self._negotiated: dict[str, tuple[float, Negotiated]] = {}
        self._locks = [asyncio.Lock() for _ in range(64)]  # striped: bounded, one per session key
        self._param_maps: dict[str, dict[str, dict]] = {}  # server id -> tool -> x-mcp-header map
        # Throwaway sessions are DELETEd off the caller's path: an upstream slow to forget a session
        # must not hold a health check or a tool listing past its timeout.
        self._background: set[asyncio.Task] = set()

    # --- the interface ---------------------------------------------------------------------

    async def call_tool(
        self, *, server: ServerSpec, name: str, arguments: dict, session_key: str | None, timeout_s: float,
        meta: dict | None = None, on_message: wire.OnMessage | None = None, extra_params: dict | None = None,
    ) -> dict:
        """The CallToolResult as the upstream returned it; `isError: true` is a result, not an error.
        `meta` goes into `params._meta` (a progress token, a traceparent); `on_message` receives
        the upstream's notifications (progress) streamed before the answer; `extra_params` are
        further params (an MRTR retry's inputResponses and requestState)."""
        deadline = time.monotonic() + timeout_s
        params = {**(extra_params or {}), "name": name, "arguments": arguments}
        if meta:
            params["_meta"] = dict(meta)

        async def run(nego: Negotiated, session: _Session) -> dict:
            try:
                return await self._request(server, nego, session, "tools/call", params, deadline, name=name, arguments=arguments, on_message=on_message)
            except E.UpstreamJsonRpcError as exc:
                if not (nego.modern and exc.upstream_code == P.HEADER_MISMATCH):
                    raise
            # The tool mirrors arguments into Mcp-Param headers this process has not learned yet.
            # (A header mismatch is refused before the tool runs, so this is not a second call.)
            self._learn_param_maps(server, await self._list_all(server, nego, session, deadline, "tools/list", "tools"))
            return await self._request(server, nego, session, "tools/call", params, deadline, name=name, arguments=arguments, on_message=on_message)

        return await self._run(server, session_key, deadline, run)

    async def request(
        self, *, server: ServerSpec, method: str, params: dict, session_key: str | None, timeout_s: float,
        name: str | None = None, on_message: wire.OnMessage | None = None,
    ) -> dict:
        """Any other request (resources/read, prompts/get, ...) in the session of `session_key`."""
        deadline = time.monotonic() + timeout_s

        async def run(nego: Negotiated, session: _Session) -> dict:
            return await self._request(server, nego, session, method, params, deadline, name=name, on_message=on_message)

        return await self._run(server, session_key, deadline, run)

    async def list_tools(self, *, server: ServerSpec, timeout_s: float) -> list[dict]:
        """Every tool, following `nextCursor` until the server says there are no more."""
        tools = await self.list_all(server=server, method="tools/list", key="tools", timeout_s=timeout_s)
        self._learn_param_maps(server, tools)
        return tools

    async def list_all(self, *, server: ServerSpec, method: str, key: str, timeout_s: float) -> list[dict]:
        """Every item of a paginated list (tools/list, resources/list, prompts/list, ...)."""
        deadline = time.monotonic() + timeout_s

        async def run(nego: Negotiated, session: _Session) -> list[dict]:
            return await self._list_all(server, nego, session, deadline, method, key)

        return await self._run(server, None, deadline, run)

    async def probe(self, *, server: ServerSpec, timeout_s: float) -> ProbeResult:
        """A live handshake, never answered from a cache; it refreshes the cached negotiation."""
        deadline = time.monotonic() + timeout_s
        started = time.perf_counter()
        nego, session, server_info = await self._handshake(server, deadline)
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        await self._remember(server, nego)
        if session is not None:
            self._delete_soon(server, session)
        return ProbeResult(protocol_version=nego.version, server_info=server_info, latency_ms=latency_ms)

    async def close_session(self, *, server: ServerSpec, session_key: str) -> None:
        """End the upstream session of one Maestro session (DELETE), if it has one. Best-effort."""
        key = self._session_key(server, session_key)
        entry = await self._cache("get", key)
        if not entry:
            return
        await self._cache("delete", key)
        await self._delete(server, _Session(**entry))

    async def close(self) -> None:
        """Finish pending session DELETEs, then close the pool (tests; a process exit does this)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._http.close()

    # --- orchestration ---------------------------------------------------------------------

    async def _run(self, server: ServerSpec, session_key: str | None, deadline: float, fn: Callable[[Negotiated, _Session], Awaitable[T]]) -> T:
        try:
            return await self._with_session(server, session_key, deadline, fn)
        except E.UpstreamJsonRpcError as exc:
            if exc.upstream_code != P.UNSUPPORTED_PROTOCOL_VERSION:
                raise
        # The server no longer speaks the revision we negotiated (it was redeployed): once more.
        # (It refused the request's revision before running anything.)
        await self._forget(server)
        return await self._with_session(server, session_key, deadline, fn)

    async def _with_session(self, server: ServerSpec, session_key: str | None, deadline: float, fn: Callable[[Negotiated, _Session], Awaitable[T]]) -> T:
        nego, fresh = await self._negotiation(server, deadline)
        if not nego.sessions:
            return await fn(nego, fresh or _Session(None, nego.version))
        if session_key is None:
            session = fresh or (await self._initialize(server, deadline))[1]
            try:
                return await fn(nego, session)
            except E.SessionGone:
                raise E.UpstreamSessionLost(f"MCP server {server.name!r} dropped a new MCP session at once") from None
            finally:
                self._delete_soon(server, session)
        session = await self._session_get(server, session_key, fresh, deadline)
        try:
            return await fn(nego, session)
        except E.SessionGone:
            # A 404 for an unknown session: the request was refused unprocessed, so it may go again.
            logger.info("upstream MCP session expired; re-initializing", extra={"server": server.name})
        session = await self._session_renew(server, session_key, session, deadline)
        try:
            return await fn(nego, session)
        except E.SessionGone:
            raise E.UpstreamSessionLost(f"MCP server {server.name!r} dropped the MCP session again right after it was re-initialized") from None

    async def _list_all(self, server: ServerSpec, nego: Negotiated, session: _Session, deadline: float, method: str, key: str) -> list[dict]:
        items: list[dict] = []
        cursor, seen = None, set()
        for _ in range(MAX_TOOL_PAGES):
            result = await self._request(server, nego, session, method, {"cursor": cursor} if cursor else {}, deadline)
            page = result.get(key)
            named = "uri" if key == "resources" else "uriTemplate" if key == "resourceTemplates" else "name"
            if not isinstance(page, list) or not all(isinstance(t, dict) and isinstance(t.get(named), str) for t in page):
                raise E.UpstreamNotMcp(f"MCP server {server.name!r} answered {method} without a valid {key} array")
            items.extend(page)
            cursor = result.get("nextCursor")
            if cursor is None or cursor == "":
                return items
            if not isinstance(cursor, str) or cursor in seen:
                raise E.UpstreamNotMcp(f"MCP server {server.name!r} returned a {method} cursor that repeats")
            seen.add(cursor)
        raise E.UpstreamNotMcp(f"MCP server {server.name!r} paginated {method} past {MAX_TOOL_PAGES} pages")

    # --- negotiation -----------------------------------------------------------------------

    async def _negotiation(self, server: ServerSpec, deadline: float) -> tuple[Negotiated, _Session | None]:
        """The cached outcome, or a handshake now. A session opened by that handshake is returned
        so the caller can use it instead of opening another one."""
        key = _url_key(server.url)
        hit = self._negotiated.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], None
        shared = await self._cache("get", f"mcp:upstream:nego:{key}")
        if isinstance(shared, dict):
            try:
                nego = Negotiated(**shared)
            except TypeError:
                nego = None
            if nego is not None:
                self._negotiated[key] = (time.monotonic() + NEGOTIATION_LOCAL_TTL, nego)
                return nego, None
        nego, session, _ = await self._handshake(server, deadline)
        await self._remember(server, nego)
        return nego, session

    async def _remember(self, server: ServerSpec, nego: Negotiated) -> None:
        key = _url_key(server.url)
        self._negotiated[key] = (time.monotonic() + NEGOTIATION_LOCAL_TTL, nego)
        await self._cache("set", f"mcp:upstream:nego:{key}", asdict(nego), NEGOTIATION_SHARED_TTL)

    async def _forget(self, server: ServerSpec) -> None:
        key = _url_key(server.url)
        self._negotiated.pop(key, None)
        await self._cache("delete", f"mcp:upstream:nego:{key}")

    async def _handshake(self, server: ServerSpec, deadline: float) -> tuple[Negotiated, _Session | None, dict]:
        modern = Negotiated(P.MODERN_VERSION, modern=True, sessions=False)
        try:
            result = await self._request(server, modern, _Session(None, P.MODERN_VERSION), "server/discover", {}, deadline)
        except E.UpstreamJsonRpcError as exc:
            supported = exc.upstream_data.get("supported") if isinstance(exc.upstream_data, dict) else None
            if exc.upstream_code == P.UNSUPPORTED_PROTOCOL_VERSION and isinstance(supported, list):
                if not any(v in P.HANDSHAKE_VERSIONS for v in supported):
                    raise E.UpstreamProtocolUnsupported(
                        f"MCP server {server.name!r} speaks only revisions this gateway does not: {wire.excerpt(', '.join(map(str, supported)))}"
                    ) from None
        except (E.UpstreamHttpError, E.UpstreamNotMcp, E.SessionGone):
            pass  # an older server, or not MCP at all: `initialize` will tell
        else:
            versions = result.get("supportedVersions")
            if isinstance(versions, list) and P.MODERN_VERSION in versions:
                info = (result.get("_meta") or {}).get(P.META_SERVER_INFO)
                return modern, None, info if isinstance(info, dict) else {}
        return await self._initialize(server, deadline)

    async def _initialize(self, server: ServerSpec, deadline: float) -> tuple[Negotiated, _Session, dict]:
        params = {"protocolVersion": P.HANDSHAKE_VERSIONS[0], "capabilities": P.CLIENT_CAPABILITIES, "clientInfo": P.CLIENT_INFO}
        message = {"jsonrpc": "2.0", "id": self._next_id(), "method": "initialize", "params": params}
        headers = {**server.headers, "Accept": P.ACCEPT, "Content-Type": "application/json"}
        reply = await wire.post(self._http, url=server.url, headers=headers, message=message, deadline=deadline, max_bytes=server.max_response_bytes, label=server.name)
        result = reply.result or {}
        version = result.get("protocolVersion")
        if version not in P.HANDSHAKE_VERSIONS:
            shown = wire.excerpt(str(version)) if isinstance(version, str) else "none"
            raise E.UpstreamProtocolUnsupported(f"MCP server {server.name!r} settled on protocol revision {shown!r}, which this gateway does not speak")
        sid = reply.headers.get(P.H_SESSION_ID)
        if sid is not None and not P.SESSION_ID_RE.fullmatch(sid):
            raise E.UpstreamNotMcp(f"MCP server {server.name!r} issued a malformed Mcp-Session-Id")
        session = _Session(sid, version)
        try:
            await self._post(server, session, {"jsonrpc": "2.0", "method": "notifications/initialized"}, deadline, legacy=True)
        except (E.UpstreamHttpError, E.UpstreamJsonRpcError, E.UpstreamNotMcp, E.SessionGone):
            # The handshake already succeeded; a server that will not take the notification shows
            # whether it works on the next request, and that one's failure says why.
            logger.debug("upstream refused notifications/initialized", extra={"server": server.name})
        info = result.get("serverInfo")
        return Negotiated(version, modern=False, sessions=sid is not None), session, info if isinstance(info, dict) else {}

    # --- requests --------------------------------------------------------------------------

    async def _request(
        self, server: ServerSpec, nego: Negotiated, session: _Session, method: str, params: dict, deadline: float, *,
        name: str | None = None, arguments: dict | None = None, on_message: wire.OnMessage | None = None,
    ) -> dict:
        message = {"jsonrpc": "2.0", "id": self._next_id(), "method": method, "params": params}
        if not telemetry.enabled():
            return await self._send(server, nego, session, message, deadline, name=name, arguments=arguments, on_message=on_message)
        # Traced: a CLIENT span per upstream request (OpenTelemetry MCP conventions), whose context
        # travels on as the `traceparent` header and in `params._meta`.
        address = urlsplit(server.url)
        with telemetry.span(f"{method} {name}" if name else method, kind=SpanKind.CLIENT, **{
            "mcp.method.name": method, "gen_ai.tool.name": name if method == "tools/call" else None,
            "mcp.protocol.version": nego.version, "mcp.session.id": None if nego.modern else session.sid,
            "jsonrpc.request.id": message["id"], "network.transport": "tcp",
            "server.address": address.hostname, "server.port": address.port or (443 if address.scheme == "https" else 80),
        }):
            carried = telemetry.current_traceparent()
            message["params"] = {**params, "_meta": {**(params.get("_meta") or {}), "traceparent": carried}}
            return await self._send(
                server, nego, session, message, deadline, name=name, arguments=arguments, on_message=on_message,
                trace_headers={"traceparent": carried},
            )

    async def _send(
        self, server: ServerSpec, nego: Negotiated, session: _Session, message: dict, deadline: float, *,
        name: str | None, arguments: dict | None, on_message: wire.OnMessage | None, trace_headers: dict | None = None,
    ) -> dict:
        if not nego.modern:
            return (await self._post(server, session, message, deadline, legacy=True, extra=trace_headers, on_message=on_message)).result
        message["params"] = P.modern_meta(message["params"])
        headers = {P.H_METHOD: message["method"], **(trace_headers or {})}
        if name is not None:
            headers[P.H_NAME] = P.encode_header_value(name)
            header_map = self._param_maps.get(server.id, {}).get(name)
            if header_map and arguments:
                headers.update(P.param_headers(header_map, arguments))
        return (await self._post(server, _Session(None, P.MODERN_VERSION), message, deadline, legacy=False, extra=headers, on_message=on_message)).result

    async def _post(
        self, server: ServerSpec, session: _Session, message: dict, deadline: float, *, legacy: bool, extra: dict | None = None,
        on_message: wire.OnMessage | None = None,
    ) -> wire.Reply:
        headers = {**server.headers, "Accept": P.ACCEPT, "Content-Type": "application/json", P.H_PROTOCOL_VERSION: session.version}
        if legacy and session.sid:
            headers[P.H_SESSION_ID] = session.sid
        if extra:
            headers.update(extra)
        return await wire.post(
            self._http, url=server.url, headers=headers, message=message, deadline=deadline,
            max_bytes=server.max_response_bytes, label=server.name, sent_session=bool(legacy and session.sid), on_message=on_message,
        )

    async def _delete(self, server: ServerSpec, session: _Session) -> None:
        if not session.sid:
            return
        headers = {**server.headers, P.H_SESSION_ID: session.sid, P.H_PROTOCOL_VERSION: session.version}
        timeout = min(SESSION_DELETE_TIMEOUT_S, server.timeout_ms / 1000)
        await wire.delete(self._http, url=server.url, headers=headers, timeout_s=timeout)

    def _delete_soon(self, server: ServerSpec, session: _Session) -> None:
        if session.sid:
            task = asyncio.get_running_loop().create_task(self._delete(server, session))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _next_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def _learn_param_maps(self, server: ServerSpec, tools: list[dict]) -> None:
        maps = {t["name"]: m for t in tools if (m := P.param_header_map(t.get("inputSchema")))}
        self._param_maps[server.id] = maps

    # --- upstream sessions in the shared cache ---------------------------------------------

    def _session_key(self, server: ServerSpec, session_key: str) -> str:
        digest = hashlib.sha256(session_key.encode()).hexdigest()[:32]
        return f"mcp:upstream:session:{server.id}:{_url_key(server.url)}:{digest}"

    def _session_ttl(self) -> int:
        return int(getattr(settings, "SESSION_TTL_SECONDS", 3600)) + 300

    async def _session_get(self, server: ServerSpec, session_key: str, fresh: _Session | None, deadline: float) -> _Session:
        key = self._session_key(server, session_key)
        entry = await self._shared("get", key)
        if not entry:
            async with self._locks[hash(key) % len(self._locks)]:
                entry = await self._shared("get", key)
                if not entry:
                    session = fresh or (await self._initialize(server, deadline))[1]
                    if not session.sid or await self._shared("add", key, asdict(session), self._session_ttl()):
                        return session
                    entry = await self._shared("get", key)  # another worker won the race: use theirs
                    if not entry:
                        await self._shared("set", key, asdict(session), self._session_ttl())
                        return session
                    self._delete_soon(server, session)
                    return _Session(**entry)
        if fresh is not None:
            self._delete_soon(server, fresh)
        return _Session(**entry)

    async def _session_renew(self, server: ServerSpec, session_key: str, stale: _Session, deadline: float) -> _Session:
        key = self._session_key(server, session_key)
        async with self._locks[hash(key) % len(self._locks)]:
            entry = await self._shared("get", key)
            if entry and entry.get("sid") != stale.sid:
                return _Session(**entry)  # another call or worker already renewed it
            _, session, _ = await self._initialize(server, deadline)
            if session.sid:
                await self._shared("set", key, asdict(session), self._session_ttl())
            else:
                await self._shared("delete", key)
            return session

    async def _shared(self, op: str, *args):
        """The session store must work: without it, every call would open a new upstream session."""
        try:
            return await _CACHE_OPS[op](*args)
        except aredis.CacheUnavailable:
            logger.warning("shared cache unavailable for upstream MCP sessions")
            raise Unavailable("the shared cache is unavailable, so upstream MCP sessions cannot be kept", code="cache_unavailable") from None

    async def _cache(self, op: str, *args):
        """Negotiation results are an optimisation: a cache failure only costs a handshake."""
        try:
            return await _CACHE_OPS[op](*args)
        except aredis.CacheUnavailable:
            logger.warning("shared cache unavailable for upstream negotiation")
            return None


_CACHE_OPS = {"get": aredis.cache_get, "set": aredis.cache_set, "add": aredis.cache_add, "delete": aredis.cache_delete}


def _resolver():
    """Every connection goes to an address the destination policy (mcp.upstream.destinations, the
    SSRF guard) accepted after DNS resolution; a refused one is DestinationRefused, not retried."""
    from mcp.upstream.destinations import aresolve_checked

    async def checked(host: str, port: int) -> list[tuple[int, tuple]]:
        return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (str(ip), port)) for ip in await aresolve_checked(host, port)]

    return checked


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


# The client of the running event loop: connections belong to the loop that opened them (and a
# forked worker starts its own loop, so it never shares a parent's connections).
get_client = per_loop(UpstreamClient)


def sync_call(method: str, **kwargs):
    """The bridge for synchronous callers (the registry's probe and tool discovery, run from views,
    Celery and commands): `get_client().<method>(**kwargs)` on the data plane's loop, waited for.
    Each method bounds itself with its own deadline."""

    async def call():
        return await getattr(get_client(), method)(**kwargs)

    return bridge.run(call())
