"""Start and stop what a data-plane process keeps for its event loop: the bridge to it, the
revocation watch; and, at the end, queued slot releases and evidence rows, upstream connections,
the database pool. The web door (ASGI lifespan) and the gRPC door call these."""

from __future__ import annotations

import asyncio

from maestro import bridge


async def data_plane_start(*, serve: bool = True) -> None:
    from sessions_app import revocation

    bridge.serve_loop(asyncio.get_running_loop())
    if serve:
        revocation.watch_start()


async def data_plane_stop() -> None:
    from maestro import adb
    from mcp.mcpserver import streams
    from mcp.services import evidence_writer, limits
    from mcp.upstream.client import get_client
    from sessions_app import revocation

    await revocation.watch_stop()
    await streams.hub().stop()
    await limits.slots().drain()
    await evidence_writer.writer().drain()
    await get_client().close()
    await adb.database().close()
    get_client.forget()
    adb.database.forget()
    bridge.serve_loop(None)
