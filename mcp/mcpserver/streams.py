"""Long-lived streams of the endpoint: the GET stream of the session revisions and the response
stream of a 2026-07-28 `subscriptions/listen`, both carrying `notifications/*/list_changed`.

One `Hub` per worker process (per event loop) holds ONE subscription to the list-change channel
(Redis pub/sub; in-process without Redis: mcp.services.changes) and fans each event out to the
streams open in this process, so an open stream costs a coroutine, a small listener and a task
that notices the client leaving: no thread, no Redis connection. A stream ends when the client
leaves, when its token expires or its session is revoked (checked at every keep-alive), or when
the worker stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from django.conf import settings

from maestro import aredis, bridge
from maestro.bridge import per_loop
from mcp.mcpserver import sessions
from mcp.services import catalog, changes
from sessions_app.tokens import SessionClaims
from sessions_app.verify import session_is_revoked

logger = logging.getLogger("mcp.mcpserver")

KEEPALIVE_S = 15.0
SUBSCRIBE_WAIT_S = 2.0
RECONNECT_MAX_S = 2.0
NOTIFICATION = {"tools": "notifications/tools/list_changed", "resources": "notifications/resources/list_changed", "prompts": "notifications/prompts/list_changed"}


def sse_event(message: dict) -> bytes:
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
OPENED = b": open\n\n"


class Listener:
    """One open stream's interest: which lists, for which servers (empty: any)."""

    __slots__ = ("lists", "servers", "pending", "wake")

    def __init__(self, *, lists: frozenset[str], servers: tuple[str, ...]):
        self.lists = lists
        self.servers = servers
        self.pending: set[str] = set()
        self.wake = asyncio.Event()

    def offer(self, event: dict) -> None:
        server = event.get("server")
        if self.servers and server != "*" and server not in self.servers:
            return
        wanted = self.lists.intersection(event.get("lists") or ())
        if wanted:
            self.pending.update(wanted)
            self.wake.set()


class Hub:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.events = 0  # events received (tests observe delivery through it)
        self.subscribed = asyncio.Event()  # set while the subscription is in place
        self._redis = None

    def register(self, listener: Listener) -> None:
        self.listeners.add(listener)
        self._ensure_started()

    def unregister(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def dispatch(self, event: dict) -> None:
        self.events += 1
        if "mcp_session" in event:  # an endpoint session ended or changed on some worker
            sessions.local_forget(str(event["mcp_session"]))
            return
        catalog.version_recheck()  # a client told of a change relists at once, on any worker
        for listener in list(self.listeners):
            listener.offer(event)

    def _client(self):
        """A client of its own for the subscription: an idle subscription reads nothing for long
        stretches, which the data plane's 1-second socket timeout would take for a dead Redis."""
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=aredis.SOCKET_TIMEOUT_S, health_check_interval=10, driver_info=None,
                client_name=aredis.LIST_CHANGES_NAME,
            )
        return self._redis

    def start(self) -> None:
        """Subscribe now (the web door's workers do at start, so each one hears every change)."""
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        if not settings.REDIS_URL:
            changes.listener_add(self._from_any_thread)
            self._task = self._loop.create_future()  # a stand-in that never completes: started
            self.subscribed.set()
            return
        self._task = self._loop.create_task(self._follow(), name="maestro-mcp-list-changes")

    def _from_any_thread(self, event: dict) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.dispatch, event)

    async def _follow(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._client().pubsub()
            try:
                await pubsub.subscribe(changes.CHANNEL)
                self.subscribed.set()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        try:
                            event = json.loads(message["data"])
                        except ValueError:
                            continue
                        if isinstance(event, dict):
                            self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone: events meanwhile are lost (best-effort), reconnect
                logger.warning("list-change subscription lost (%s); reconnecting", type(exc).__name__)
            finally:
                self.subscribed.clear()
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def stop(self) -> None:
        changes.listener_remove(self._from_any_thread)
        await bridge.cancel_and_wait(self._task)
        self._task = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


hub = per_loop(Hub)


async def _watch_disconnect(receive, listener: Listener, gone: list) -> None:
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
    finally:
        gone.append(True)
        listener.wake.set()


async def serve_stream(
    *, receive, start, write, claims: SessionClaims, lists: frozenset[str], wrap, first: bytes | None = None, on_keepalive=None,
) -> None:
    """Keep a stream open until the client leaves or the token ends: `start()` sends the answer's
    head, `write(bytes)` sends on it, `wrap(notification)` adds what the revision needs (a
    subscription id), `first` is sent at once, `on_keepalive()` is awaited at every keep-alive."""
    listener = Listener(lists=lists, servers=claims.servers)
    gone: list = []
    watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, listener, gone))
    found = hub()
    found.register(listener)
    try:
        # A client told the stream is open may change something at once: be listening, and
        # subscribed, before it is told (Redis unreachable: the stream opens all the same, and
        # hears changes once it is back).
        try:
            await asyncio.wait_for(found.subscribed.wait(), SUBSCRIBE_WAIT_S)
        except asyncio.TimeoutError:
            logger.warning("list-change subscription not ready; opening the stream without it")
        await start()
        # Something at once: a server may hold back the head until the first bytes of the body.
        await write(first if first is not None else OPENED)
        while not gone:
            left = claims.expires_at - time.time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(listener.wake.wait(), timeout=min(KEEPALIVE_S, left))
            except asyncio.TimeoutError:
                if gone or await session_is_revoked(sid=claims.sid):
                    return
                await write(KEEPALIVE)
                if on_keepalive is not None:
                    await on_keepalive()
                continue
            listener.wake.clear()
            if gone:
                return
            ready, listener.pending = listener.pending, set()
            for name in sorted(ready):
                await write(sse_event(wrap({"jsonrpc": "2.0", "method": NOTIFICATION[name]})))
    finally:
        hub().unregister(listener)
        watcher.cancel()
