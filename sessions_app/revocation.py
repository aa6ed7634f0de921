"""Is this session revoked? Answered from process memory where that is provably current.

Every data-plane process keeps the set of revoked, unexpired sids, kept current by Redis pub/sub
(`store.RedisStore.mark_revoked` publishes each revocation after writing it):

1. subscribe to the revocation channel, then read the whole set (ZRANGEBYSCORE on the sorted set),
   so no revocation can fall between the two;
2. with MCP_SESSIONS_PERSIST=true, only after checking the flush sentinel: when Redis lost its
   data, the set is rebuilt from `mcp_sessions` first (one process does it, the others wait);
3. send a PING on the subscription every `PING_INTERVAL_S`. Redis answers on the same connection,
   after every message published before it, so a PONG for a PING sent at time t proves that every
   revocation published before t is in the set.

The set answers only while the last proven time is within `TRUST_S`; otherwise (starting,
disconnected, Redis slow) `known()` returns None and the caller asks Redis (or, with persistence
and Redis down, the table) for this sid. So a revocation takes effect on every worker and replica
within `TRUST_S` (under a second), a lost message cannot go unnoticed, and a disconnect followed by
a revocation is caught by the direct check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from django.conf import settings

from maestro import adb, aredis, bridge
from sessions_app.store import RedisStore, get_store

logger = logging.getLogger("maestro.sessions")

PING_INTERVAL_S = 0.2
TRUST_S = 0.75
RECONNECT_MAX_S = 1.0
REBUILD_LOCK_SECONDS = 60  # the same lock the synchronous re-seed in sessions_app.services takes


class RevocationWatch:
    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._revoked: dict[str, float] = {}  # sid -> when its token dies (Unix seconds)
        self._proven_at = float("-inf")  # monotonic send time of the newest answered PING
        self._synced = False
        self._task: asyncio.Task | None = None
        self.resyncs = 0  # full reads of the set (tests observe reconnects through it)

    def known(self, sid: str) -> bool | None:
        """True/False when the in-process set is provably current, None when it is not."""
        if not self._synced or time.monotonic() - self._proven_at > TRUST_S:
            return None
        return sid in self._revoked

    @property
    def current(self) -> bool:
        return self._synced and time.monotonic() - self._proven_at <= TRUST_S

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="maestro-revocation-watch")

    async def stop(self) -> None:
        await bridge.cancel_and_wait(self._task)
        self._task = None
        self._synced = False

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down, reset, timeout: distrust, then reconnect
                self._synced = False
                logger.warning("revocation watch lost Redis (%s); checking each session directly until it is back", type(exc).__name__)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def _follow(self) -> None:
        client = aredis.client()
        pubsub = aredis.subscriber().pubsub()
        try:
            await pubsub.subscribe(self._store.channel)
            await self._resync(client)
            pings: dict[str, float] = {}
            next_ping = 0.0
            while True:
                now = time.monotonic()
                if now >= next_ping:
                    stamp = f"{now:.6f}"
                    pings[stamp] = now
                    await pubsub.ping(stamp)
                    next_ping = now + PING_INTERVAL_S
                    if len(pings) > 50:  # PINGs unanswered for ten seconds: the connection is dead
                        raise ConnectionError("no PONG from Redis")
                message = await pubsub.get_message(timeout=PING_INTERVAL_S)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "message":
                    self._add(json.loads(message["data"]))
                elif kind == "pong":
                    stamp = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
                    sent = pings.pop(stamp, None)
                    if sent is not None:
                        self._proven_at = max(self._proven_at, sent)
                        # PINGs answered out of order cannot happen; anything older is answered too.
                        for older in [k for k, v in pings.items() if v < sent]:
                            del pings[older]
        finally:
            self._synced = False
            try:
                await pubsub.aclose()
            except Exception:
                pass

    async def _resync(self, client) -> None:
        if settings.MCP_SESSIONS_PERSIST:
            await self._ensure_seeded(client)
        now = time.time()
        members = await client.zrangebyscore(self._store.revoked_key, now, "+inf", withscores=True)
        self._revoked = {sid.decode() if isinstance(sid, bytes) else sid: score for sid, score in members}
        self._synced = True
        self.resyncs += 1

    async def _ensure_seeded(self, client) -> None:
        """Redis lost its data (no sentinel): rebuild it from the table before trusting it."""
        while not await client.exists(self._store.sentinel_key):
            if not await reseed(self._store):
                await asyncio.sleep(0.1)  # another process is rebuilding

    def _add(self, revoked: dict[str, float]) -> None:
        now = time.time()
        self._revoked.update({sid: dies for sid, dies in revoked.items() if dies > now})
        if len(self._revoked) > 1000 and len(self._revoked) % 1000 == 0:
            self._revoked = {sid: dies for sid, dies in self._revoked.items() if dies > now}


async def reseed(store) -> bool:
    """Rebuild the store's revocations from `mcp_sessions` if no other process is doing it (a
    short lock in the store); True when this call did it."""
    from sessions_app.services import rebuild_revocations

    def rebuild_locked() -> bool:
        if not store.try_lock(REBUILD_LOCK_SECONDS):
            return False
        try:
            count = rebuild_revocations(store)
            logger.info("re-seeded %d revocation(s) from mcp_sessions after the cache lost its data", count)
        finally:
            store.unlock()
        return True

    return await adb.orm(rebuild_locked)


_reseeding: set[asyncio.Task] = set()


async def reseeds_settled() -> None:
    """Wait for the re-seeds started so far (tests; shutdown)."""
    if _reseeding:
        await asyncio.gather(*_reseeding, return_exceptions=True)


def reseed_soon(store) -> None:
    """Start a re-seed in the background (a request that found the sentinel missing)."""
    if _reseeding:
        return

    async def run() -> None:
        try:
            await reseed(store)
        except Exception:
            # The next request without a sentinel, the watch or the cleanup tries again.
            logger.exception("re-seeding revocations from mcp_sessions failed")

    task = asyncio.get_running_loop().create_task(run())
    _reseeding.add(task)
    task.add_done_callback(_reseeding.discard)


_watch: RevocationWatch | None = None


def watch() -> RevocationWatch | None:
    """This process's watch, once started (None in the embedded mode and before the start)."""
    return _watch


def watch_start() -> RevocationWatch | None:
    """Start following revocations on the running loop (the data plane's startup calls it)."""
    global _watch
    store = get_store()
    if not isinstance(store, RedisStore):
        return None
    if _watch is None:
        _watch = RevocationWatch(store)
    _watch.start()
    return _watch


async def watch_stop() -> None:
    global _watch
    if _watch is not None:
        await _watch.stop()
        _watch = None
