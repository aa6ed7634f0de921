"""The MCP methods the endpoint serves, each a coroutine `(call) -> result dict` that raises
`RpcError` for a JSON-RPC error. Lists and calls go through the services (listing, the one core);
gateway failures map to MCP here, in one place (README, "The MCP endpoint", error table):

- the arguments fail the tool's inputSchema, an unknown tool, resource or prompt: JSON-RPC -32602
  (invalid params), the message naming the path or the name;
- the upstream answered a JSON-RPC error: that error, passed on;
- anything else (policy denial, upstream down or timed out, the session's in-flight limit, ...):
  a result with `isError: true`, a clear text, and the gateway's code in `_meta`
  (`io.maestro/error`) with the policy receipt when a decision was made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from maestro import errors
from mcp.mcpserver import naming, sessions
from mcp.mcpserver import protocol as R
from mcp.mcpserver.protocol import RpcError
from mcp.services import catalog, changes, listing
from mcp.services.invoke import tool_invoke, upstream_read
from mcp.upstream.errors import UpstreamJsonRpcError
from sessions_app.tokens import SessionClaims

logger = logging.getLogger("mcp.mcpserver")

LIST_TTL_MS = 10_000  # 2026-07-28 ttlMs of a list: list_changed invalidates it sooner
MAX_URI = 2048
FORWARDED_META = ("progressToken", "traceparent", "tracestate", "baggage", R.META_LOG_LEVEL)
MRTR_PARAMS = ("inputResponses", "requestState")  # a 2026-07-28 multi-round retry's params, passed on
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
UPSTREAM_LIST_CHANGED = {
    "notifications/tools/list_changed": "tools", "notifications/resources/list_changed": "resources",
    "notifications/prompts/list_changed": "prompts",
}


@dataclass
class Call:
    """One JSON-RPC request to serve."""

    claims: SessionClaims
    version: str
    method: str
    params: dict
    # Sends a request-related notification (progress, log messages) on this request's SSE stream,
    # if the client accepts one; None when nothing can carry it.
    notify: Callable[[dict], Awaitable[None]] | None = None
    background: set = field(default_factory=set)
    upstream_ref: str | None = None  # the server being called, once known
    log_level: str | None = None  # a session revision's level (logging/setLevel)
    session_id: str | None = None

    @property
    def transparent_server(self) -> str | None:
        """A one-server session sees the upstream's names unchanged."""
        return self.claims.servers[0] if len(self.claims.servers) == 1 else None

    def forwarded_meta(self) -> dict | None:
        """What of the client's `_meta` goes upstream: progress token, trace context, the log level;
        a 2026-07-28 client's capabilities (an upstream may then ask it for input, MRTR). A session
        revision's client hears every log message until it sets a level, as from a server of its
        revision: its level (or "debug") is passed on."""
        meta = self.params.get("_meta")
        meta = meta if isinstance(meta, dict) else {}
        kept = {key: meta[key] for key in FORWARDED_META if key in meta}
        if self.version == R.MODERN:
            if isinstance(meta.get(R.META_CLIENT_CAPABILITIES), dict):
                kept[R.META_CLIENT_CAPABILITIES] = meta[R.META_CLIENT_CAPABILITIES]
        else:
            kept[R.META_LOG_LEVEL] = self.log_level or "debug"
        return kept or None

    def traceparent(self) -> str | None:
        """The client's W3C trace context from `params._meta`, which the gateway's spans continue
        (an MCP client has no other place for it on a stream or in a session)."""
        meta = self.params.get("_meta")
        found = meta.get("traceparent") if isinstance(meta, dict) else None
        return found if isinstance(found, str) else None

    async def relay(self, message: dict) -> None:
        """on_message for the core: what an upstream streams before its answer."""
        kind = UPSTREAM_LIST_CHANGED.get(message.get("method"))
        if kind is not None:  # not about this request: announced to every open stream instead
            if self.upstream_ref:
                task = asyncio.get_running_loop().create_task(announce_upstream_change(server_ref=self.upstream_ref, lists=(kind,)))
                self.background.add(task)
                task.add_done_callback(self.background.discard)
            return
        if self.notify is not None and "id" not in message:  # requests to the client cannot be relayed
            await self.notify(message)


def _paged(kind: str, items: list[dict], params: dict, key: str, version: str) -> dict:
    offset = 0
    if "cursor" in params and params["cursor"] is not None:
        offset = naming.cursor_decode(kind, params["cursor"])
        if offset is None or offset > len(items):
            raise RpcError(R.INVALID_PARAMS, "Invalid cursor", gateway_code="invalid_cursor")
    size = settings.MCP_ENDPOINT_PAGE_SIZE
    result: dict = {key: items[offset : offset + size]}
    if offset + size < len(items):
        result["nextCursor"] = naming.cursor_encode(kind, offset + size)
    return R.result_for(version, result, cacheable=True, ttl_ms=LIST_TTL_MS)


_tool_tables: dict[int, tuple[list, naming.NameTable, list[dict]]] = {}


async def _tools_view(call: Call) -> tuple[naming.NameTable, list[dict]]:
    view = await listing.session_tool_definitions(claims=call.claims)
    hit = _tool_tables.get(id(view))
    if hit is not None and hit[0] is view:
        return hit[1], hit[2]
    table = naming.NameTable(transparent=call.transparent_server is not None)
    listed = []
    for server, tool in view:
        entry = dict(tool)
        entry["name"] = table.add(server.name, tool["name"])
        listed.append(entry)
    if len(_tool_tables) > 1000:
        _tool_tables.clear()
    _tool_tables[id(view)] = (view, table, listed)
    return table, listed


async def tools_list(call: Call) -> dict:
    _, listed = await _tools_view(call)
    return _paged("tools", listed, call.params, "tools", call.version)


def _failure_result(exc: errors.GatewayError) -> dict:
    meta = {R.META_ERROR: {"code": exc.code}}
    if exc.receipt:
        meta[R.META_RECEIPT] = exc.receipt
    return {"content": [{"type": "text", "text": f"{exc.message} ({exc.code})"}], "isError": True, "_meta": meta}


def _mapped(exc: errors.GatewayError, name: str, what: str) -> RpcError | None:
    """The gateway failures that are JSON-RPC errors (see the module docstring); None: isError."""
    if isinstance(exc, UpstreamJsonRpcError):
        # The upstream's own error, passed on as it is (its data too: a client may act on it).
        if exc.upstream_data is not None:
            return RpcError(exc.upstream_code or R.INTERNAL_ERROR, exc.upstream_message or exc.message, data=exc.upstream_data)
        return RpcError(exc.upstream_code or R.INTERNAL_ERROR, exc.upstream_message or exc.message, gateway_code=exc.code)
    if isinstance(exc, errors.InvalidInput):
        data = {"path": exc.details["path"]} if "path" in exc.details else None
        return RpcError(R.INVALID_PARAMS, exc.message, data=data, gateway_code=exc.code)
    if isinstance(exc, errors.NotFound):
        return RpcError(R.INVALID_PARAMS, f"Unknown {what}: {name[:200]}", gateway_code=exc.code)
    return None


async def tools_call(call: Call) -> dict:
    name, arguments = call.params.get("name"), call.params.get("arguments")
    if not isinstance(name, str) or not name:
        raise RpcError(R.INVALID_PARAMS, "params.name: a tool name is required", gateway_code="invalid_tool")
    if arguments is not None and not isinstance(arguments, dict):
        raise RpcError(R.INVALID_PARAMS, "params.arguments: must be an object", gateway_code="invalid_arguments")
    server = call.transparent_server
    tool = name
    if server is None:
        table, _ = await _tools_view(call)
        found = table.resolve(name)
        if found is None:
            raise RpcError(R.INVALID_PARAMS, f"Unknown tool: {name[:200]}", gateway_code="tool_not_found")
        server, tool = found
    call.upstream_ref = server
    extra = {key: call.params[key] for key in MRTR_PARAMS if key in call.params} if call.version == R.MODERN else None
    try:
        outcome = await tool_invoke(
            token=None, claims=call.claims, run_id=call.claims.run_id, server=server, tool=tool, arguments=arguments,
            transport="mcp", meta=call.forwarded_meta(), on_message=call.relay, extra_params=extra or None,
            traceparent=call.traceparent(),
        )
    except errors.GatewayError as exc:
        mapped = _mapped(exc, name, "tool")
        if mapped is not None:
            raise mapped from None
        return R.result_for(call.version, _failure_result(exc))
    return R.result_for(call.version, _with_evidence(outcome))


def _with_evidence(outcome) -> dict:
    """The upstream's result, its `_meta` extended with the receipt and the evidence row."""
    result = dict(outcome.result)
    result["_meta"] = {
        **(result.get("_meta") if isinstance(result.get("_meta"), dict) else {}),
        R.META_RECEIPT: outcome.receipt, R.META_EVIDENCE: {"seq": outcome.evidence_seq, "hash": outcome.evidence_hash},
    }
    return result


def _with_uri(item: dict, key: str, server: str, transparent: bool) -> dict:
    if transparent or not isinstance(item.get(key), str):
        return item
    return {**item, key: naming.resource_uri(server, item[key], transparent=False)}


async def resources_list(call: Call) -> dict:
    transparent = call.transparent_server is not None
    items = [_with_uri(item, "uri", server.name, transparent) for server, item in await listing.session_items(claims=call.claims, method="resources/list")]
    return _paged("resources", items, call.params, "resources", call.version)


async def resource_templates_list(call: Call) -> dict:
    transparent = call.transparent_server is not None
    items = [
        _with_uri(item, "uriTemplate", server.name, transparent)
        for server, item in await listing.session_items(claims=call.claims, method="resources/templates/list")
    ]
    return _paged("templates", items, call.params, "resourceTemplates", call.version)


async def _prompts_view(call: Call) -> tuple[naming.NameTable, list[dict]]:
    table = naming.NameTable(transparent=call.transparent_server is not None)
    listed = []
    for server, prompt in await listing.session_items(claims=call.claims, method="prompts/list"):
        if isinstance(prompt.get("name"), str):
            listed.append({**prompt, "name": table.add(server.name, prompt["name"])})
    return table, listed


async def prompts_list(call: Call) -> dict:
    _, listed = await _prompts_view(call)
    return _paged("prompts", listed, call.params, "prompts", call.version)


async def _read(call: Call, *, kind: str, method: str, server: str, name: str, listed: str, params: dict) -> dict:
    call.upstream_ref = server
    try:
        outcome = await upstream_read(
            claims=call.claims, server=server, kind=kind, name=name, method=method, params=params,
            meta=call.forwarded_meta(), on_message=call.relay, traceparent=call.traceparent(),
        )
    except errors.GatewayError as exc:
        mapped = _mapped(exc, listed, kind)
        if mapped is not None:
            raise mapped from None
        # A read has no error result: the failure is a JSON-RPC error with the gateway's code.
        raise RpcError(R.INTERNAL_ERROR, f"{exc.message} ({exc.code})", data={"receipt": exc.receipt} if exc.receipt else None, gateway_code=exc.code) from None
    return _with_evidence(outcome)


async def resources_read(call: Call) -> dict:
    uri = call.params.get("uri")
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        raise RpcError(R.INVALID_PARAMS, f"params.uri: a resource URI of 1-{MAX_URI} characters is required", gateway_code="invalid_uri")
    transparent = call.transparent_server
    found = naming.resource_back(uri, transparent_server=transparent)
    if found is None:
        raise RpcError(R.INVALID_PARAMS, f"Unknown resource: {uri[:200]}", gateway_code="resource_not_found")
    server, upstream_uri = found
    params = {k: v for k, v in call.params.items() if k != "_meta"}
    params["uri"] = upstream_uri
    result = await _read(call, kind="resource", method="resources/read", server=server, name=upstream_uri, listed=uri, params=params)
    if transparent is None and isinstance(result.get("contents"), list):
        result["contents"] = [_with_uri(c, "uri", server, False) if isinstance(c, dict) else c for c in result["contents"]]
    return R.result_for(call.version, result, cacheable=True, ttl_ms=0)


async def prompts_get(call: Call) -> dict:
    name = call.params.get("name")
    if not isinstance(name, str) or not name:
        raise RpcError(R.INVALID_PARAMS, "params.name: a prompt name is required", gateway_code="invalid_prompt")
    if call.transparent_server is not None:
        server, upstream_name = call.transparent_server, name
    else:
        table, _ = await _prompts_view(call)
        found = table.resolve(name)
        if found is None:
            raise RpcError(R.INVALID_PARAMS, f"Unknown prompt: {name[:200]}", gateway_code="prompt_not_found")
        server, upstream_name = found
    params = {k: v for k, v in call.params.items() if k != "_meta"}
    params["name"] = upstream_name
    result = await _read(call, kind="prompt", method="prompts/get", server=server, name=upstream_name, listed=name, params=params)
    return R.result_for(call.version, result)


async def ping(call: Call) -> dict:
    return {}


async def logging_set_level(call: Call) -> dict:
    """Session revisions: the level of the log messages relayed from upstreams in this session."""
    level = call.params.get("level")
    if level not in LOG_LEVELS:
        raise RpcError(R.INVALID_PARAMS, f"params.level: one of {', '.join(LOG_LEVELS)}", gateway_code="invalid_level")
    await sessions.mcp_session_set_level(claims=call.claims, session_id=call.session_id or "", level=level)
    return {}


async def server_discover(call: Call) -> dict:
    result = {
        "supportedVersions": list(R.SUPPORTED), "capabilities": R.CAPABILITIES, "instructions": R.INSTRUCTIONS,
        "_meta": {R.META_SERVER_INFO: R.SERVER_INFO},
    }
    return R.result_for(call.version, result, cacheable=True, ttl_ms=LIST_TTL_MS)


METHODS: dict[str, Callable[[Call], Awaitable[dict]]] = {
    "tools/list": tools_list,
    "tools/call": tools_call,
    "resources/list": resources_list,
    "resources/templates/list": resource_templates_list,
    "resources/read": resources_read,
    "prompts/list": prompts_list,
    "prompts/get": prompts_get,
}
MODERN_ONLY = {"server/discover": server_discover}
# 2026-07-28 removed ping and logging/setLevel (the level travels in each request's _meta).
SESSION_ONLY = {"ping": ping, "logging/setLevel": logging_set_level}
# The core records these (evidence, metrics); the endpoint records the rest.
RECORDED_BY_CORE = frozenset({"tools/call", "resources/read", "prompts/get"})


async def announce_upstream_change(*, server_ref: str, lists: tuple[str, ...]) -> None:
    """An upstream said one of its lists changed: refresh what the gateway keeps, tell everyone."""
    try:
        snapshot, spec = await catalog.server_resolve(ref=server_ref)
        listing.items_forget(server_id=snapshot.id)
        if "tools" in lists:
            await catalog.server_tools(server=snapshot, spec=spec, refresh=True)  # a changed list is announced there
        others = tuple(name for name in lists if name != "tools")
        if others:
            await changes.list_changed_publish_async(server_id=snapshot.id, lists=others)
    except errors.GatewayError as exc:
        logger.warning("could not refresh an upstream's changed list", extra={"code": exc.code})
