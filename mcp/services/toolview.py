"""Which tools a session may call, decided by the invoke path's own rules, on snapshots.

Pure: no query, no cache, no network. The caller brings the servers (snapshots, or anything with
their fields) and each one's tool list from wherever it keeps them: the Studio page passes the
stored lists, the data plane its cached ones. The session-level check (`policy.builtin_check_scope`:
may the session invoke at all?) stays with the caller, because listing and invoking differ there.
OPA, when configured, still has the final word per call and cannot be asked in advance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp import policy


def tool_definitions_callable(
    *, scopes: frozenset[str], servers: tuple[str, ...], server_tools: Iterable[tuple[Any, list[dict]]],
) -> list[tuple[Any, dict]]:
    """(server, the tool's definition as the server listed it) for every tool of `server_tools` a
    session with `scopes` and `servers` (server ids; empty means any) would be allowed to invoke:
    enabled servers only, each tool through `policy.builtin_check_server_and_tool`, in the order
    given. The MCP endpoint lists these definitions whole."""
    found = []
    for server, tools in server_tools:
        if not server.enabled:
            continue  # the invoke path refuses a disabled server (503 server_disabled)
        server_id = str(server.id)
        for tool in tools or ():
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str):
                continue
            denial = policy.builtin_check_server_and_tool(
                session_scopes=scopes, session_servers=servers, server_id=server_id, server_name=server.name,
                server_scopes=list(server.scopes), tool_allow=list(server.tool_allow), tool_deny=list(server.tool_deny), tool=name,
            )
            if denial is None:
                found.append((server, tool))
    return found


def tools_callable(*, scopes: frozenset[str], servers: tuple[str, ...], server_tools: Iterable[tuple[Any, list[dict]]]) -> list[dict]:
    """The tools of `tool_definitions_callable`, each as
    `{"server", "server_id", "name", "description", "inputSchema"}`."""
    return [
        {
            "server": server.name, "server_id": str(server.id), "name": tool["name"],
            "description": tool.get("description", ""), "inputSchema": tool.get("inputSchema", {}),
        }
        for server, tool in tool_definitions_callable(scopes=scopes, servers=servers, server_tools=server_tools)
    ]
