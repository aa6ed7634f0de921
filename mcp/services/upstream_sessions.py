"""When a Maestro session ends (revoked, or expired and cleaned up), its upstream MCP sessions end
too: each session-based upstream gets its DELETE, so runs never leave sessions open upstream."""

from __future__ import annotations

import logging

from maestro import bridge
from mcp.services.registry import server_list, server_spec
from mcp.upstream.client import ServerSpec, get_client

logger = logging.getLogger("maestro.invoke")


def upstream_sessions_close(sid: str) -> None:
    """Called from the control plane (revoke, cleanup): enqueue the DELETEs on the data plane's
    loop and return at once (on_session_end hooks must be quick)."""
    specs = []
    for server in server_list():
        try:
            specs.append(server_spec(server))
        except Exception:
            logger.warning("cannot read server %s to close the upstream session of %s", server.name, sid, exc_info=True)
    if specs:
        bridge.submit(_close_all(specs, sid))


async def _close_all(specs: list[ServerSpec], sid: str) -> None:
    client = get_client()
    for spec in specs:
        try:
            # A cache look-up when this session never used the server; a DELETE when it did.
            await client.close_session(server=spec, session_key=sid)
        except Exception:
            logger.warning("closing upstream session of %s on %s failed", sid, spec.name, exc_info=True)
