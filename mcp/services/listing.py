"""What one session may see across its servers, for the MCP endpoint's lists: tool definitions
(the invoke path's own rule, `toolview.tool_definitions_callable`, on the catalog's cached lists)
and the resources, resource templates and prompts of the servers it may use.

Tool lists come from the catalog (memory, then the shared cache, then the upstream). Resources,
templates and prompts are asked of each upstream (`list_all`, every page) and kept in this
process for `ITEMS_SECONDS`: a listing is not a call, so it is neither policy-checked per item
nor recorded; reading a resource or getting a prompt is (mcp.services.invoke.upstream_read). An
upstream that does not serve a list (method not found), or cannot be reached, contributes
nothing to it; the others still answer.
"""

from __future__ import annotations

import logging
import time

from maestro import errors
from mcp import policy
from mcp.services import catalog
from mcp.services.registry import ServerSnapshot
from mcp.services.toolview import tool_definitions_callable
from mcp.upstream.client import get_client
from sessions_app.tokens import SessionClaims

logger = logging.getLogger("mcp.listing")

ITEMS_SECONDS = 5.0
ITEMS_MAX_ENTRIES = 2_000
TOOL_VIEWS_MAX = 5_000
LISTS = {"resources/list": "resources", "resources/templates/list": "resourceTemplates", "prompts/list": "prompts"}

_items: dict[tuple[str, str], tuple[float, list[dict]]] = {}
_tool_views: dict[tuple, tuple[tuple, list[tuple[ServerSnapshot, dict]]]] = {}


def local_cache_clear() -> None:
    _items.clear()
    _tool_views.clear()


async def _usable_servers(claims: SessionClaims) -> list[tuple[ServerSnapshot, object]]:
    return [(snapshot, spec) for snapshot, spec in await catalog.servers_of_session(server_ids=claims.servers) if snapshot.enabled]


async def session_tool_definitions(*, claims: SessionClaims) -> list[tuple[ServerSnapshot, dict]]:
    """(server, tool definition) for every tool the session may call, servers in name order. The
    view is remembered per (servers, scopes) while the catalog hands out the same lists, so a
    tools/call that maps a name back costs dictionary look-ups, not a policy pass per tool."""
    server_tools, stamp = [], []
    for snapshot, spec in await _usable_servers(claims):
        try:
            index = await catalog.server_tools(server=snapshot, spec=spec)
        except errors.GatewayError:
            continue  # an unreachable server has no callable tools right now
        server_tools.append((snapshot, list(index.values())))
        stamp.append((snapshot, index))
    key = (claims.servers, claims.scopes)
    hit = _tool_views.get(key)
    # The same objects (held here, so never recycled): the catalog has not reloaded anything.
    if hit is not None and len(hit[0]) == len(stamp) and all(a is c and b is d for (a, b), (c, d) in zip(hit[0], stamp)):
        return hit[1]
    view = tool_definitions_callable(scopes=claims.scopes, servers=claims.servers, server_tools=server_tools)
    if len(_tool_views) >= TOOL_VIEWS_MAX:
        _tool_views.clear()
    _tool_views[key] = (tuple(stamp), view)
    return view


async def session_items(*, claims: SessionClaims, method: str) -> list[tuple[ServerSnapshot, dict]]:
    """(server, item) for `method` (resources/list, resources/templates/list, prompts/list) over
    the servers the session may use (its server list, the servers' required scopes)."""
    key = LISTS[method]
    found = []
    for snapshot, spec in await _usable_servers(claims):
        denial = policy.builtin_check_server(
            session_scopes=claims.scopes, session_servers=claims.servers, server_id=snapshot.id, server_name=snapshot.name,
            server_scopes=list(snapshot.scopes),
        )
        if denial is not None:
            continue
        found.extend((snapshot, item) for item in await _server_items(snapshot, spec, method, key))
    return found


async def _server_items(snapshot: ServerSnapshot, spec, method: str, key: str) -> list[dict]:
    hit = _items.get((snapshot.id, method))
    if hit is not None and time.monotonic() - hit[0] < ITEMS_SECONDS:
        return hit[1]
    try:
        items = await get_client().list_all(server=spec, method=method, key=key, timeout_s=spec.timeout_ms / 1000)
    except errors.GatewayError as exc:
        # -32601: the server has no such list. Anything else is logged; the other servers answer.
        if getattr(exc, "upstream_code", None) != -32601:
            logger.warning("listing failed on an upstream", extra={"server": snapshot.name, "method": method, "code": exc.code})
        items = []
    if len(_items) >= ITEMS_MAX_ENTRIES:
        _items.clear()
    _items[(snapshot.id, method)] = (time.monotonic(), items)
    return items


def items_forget(*, server_id: str) -> None:
    """An upstream announced a list change: ask it again next time."""
    for key in [k for k in _items if k[0] == server_id]:
        _items.pop(key, None)
