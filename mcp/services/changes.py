"""List changes: tell every data-plane process that a server's tools, resources or prompts may
have changed, so the MCP endpoint can send `notifications/*/list_changed` to the clients that hold
an open stream, on whichever worker or replica they are.

With Redis, one PUBLISH on `CHANNEL`; each data-plane process holds one subscription and fans the
event out in-process (mcp.mcpserver.streams.Hub). Without Redis (the embedded mode: one process),
the event goes straight to this process's listeners. Publishing is best-effort: a lost event
costs a client a stale list until its next listing, never a wrong answer (every call is checked
against the current registry).

A list change: {"server": server id, or "*" for any server, "lists": ["tools", "resources", "prompts"]}.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from django.conf import settings

from maestro import aredis

logger = logging.getLogger("mcp.changes")

CHANNEL = "maestro:mcp:list-changed"
ALL_LISTS = ("tools", "resources", "prompts")

_local_listeners: list[Callable[[dict], None]] = []


def listener_add(listener: Callable[[dict], None]) -> None:
    """Without Redis: `listener(event)` is called for every event (from any thread)."""
    _local_listeners.append(listener)


def listener_remove(listener: Callable[[dict], None]) -> None:
    if listener in _local_listeners:
        _local_listeners.remove(listener)


def _event(server_id, lists: Iterable[str]) -> dict:
    return {"server": str(server_id), "lists": [name for name in lists if name in ALL_LISTS]}


def _deliver_locally(event: dict) -> None:
    for listener in list(_local_listeners):
        try:
            listener(event)
        except Exception:
            logger.exception("list-change listener failed")


def list_changed_publish(*, server_id, lists: Iterable[str] = ALL_LISTS) -> None:
    """From synchronous code (registry writes, a tool refresh from the control plane)."""
    event = _event(server_id, lists)
    if not settings.REDIS_URL:
        _deliver_locally(event)
        return
    try:
        from django_redis import get_redis_connection

        get_redis_connection("default").publish(CHANNEL, json.dumps(event))
    except Exception as exc:  # best-effort, see the module docstring
        logger.warning("could not publish a list change (%s)", type(exc).__name__)


async def list_changed_publish_async(*, server_id, lists: Iterable[str] = ALL_LISTS) -> None:
    """From the data plane (an upstream said its list changed, or a reload found a new list)."""
    await event_publish_async(event=_event(server_id, lists))


async def event_publish_async(*, event: dict) -> None:
    """Any event for the data plane's processes on the same channel (the MCP endpoint also says
    here that one of its sessions ended: {"mcp_session": id})."""
    if not settings.REDIS_URL:
        _deliver_locally(event)
        return
    try:
        await aredis.client().publish(CHANNEL, json.dumps(event))
    except aredis.redis_errors() as exc:
        logger.warning("could not publish a list change (%s)", type(exc).__name__)
