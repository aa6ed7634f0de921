"""When a Maestro session ends (revoked, or expired and cleaned up), its upstream MCP sessions end
too: each session-based upstream gets its DELETE, so runs never leave sessions open upstream."""

from __future__ import annotations

import logging

from mcp.services.registry import server_spec_get, servers_for_session
from mcp.upstream.client import get_client

logger = logging.getLogger("maestro.invoke")


def upstream_sessions_close(sid: str) -> None:
    client = get_client()
    for snapshot in servers_for_session(server_ids=()):
        try:
            _, spec = server_spec_get(ref=str(snapshot.id))
            # A cache look-up when this session never used the server; the DELETE runs in the background.
            client.close_session(server=spec, session_key=sid)
        except Exception:
            logger.warning("closing upstream session of %s on %s failed", sid, snapshot.name, exc_info=True)
