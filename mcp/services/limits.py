"""Per-session in-flight limit (MCP_SESSION_MAX_IN_FLIGHT), shared by every worker and replica.

With Redis, a session's slots are members of a sorted set scored by when each slot expires. Taking
one is a single round trip (a script: drop the expired members, count, add); so is nothing else:
releases are queued in-process and travel with the next acquisition for the same session, or in
one pipelined flush a few milliseconds later when none comes. A slot held by a worker that died
is never released, but it expires on its own once its call could no longer be running (the
caller passes that bound: the call's timeout plus MCP_SESSION_SLOT_GRACE_SECONDS), however busy
the session stays (a counter with a key-wide TTL would be renewed by every call and leak).

Without Redis (the embedded mode, one process), the count is this process's.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from contextlib import asynccontextmanager

from django.conf import settings

from maestro import aredis, errors
from maestro.bridge import per_loop

_KEY = "mcp:inflight:{sid}"
RELEASE_FLUSH_S = 0.02

_ACQUIRE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for i = 4, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


class TooManyInFlight(errors.RateLimited):
    code = "too_many_in_flight"


def _refused(limit: int) -> TooManyInFlight:
    return TooManyInFlight(f"this session already has {limit} invocations in flight")


class _RedisSlots:
    def __init__(self) -> None:
        self._client = aredis.client()
        self._acquire = self._client.register_script(_ACQUIRE)
        self._prefix = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:"
        self._pending: dict[str, list[str]] = defaultdict(list)
        self._flush: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task] = set()

    def _key(self, sid: str) -> str:
        return self._prefix + _KEY.format(sid=sid)

    async def acquire(self, sid: str, limit: int, ttl_s: float) -> str:
        key = self._key(sid)
        member = secrets.token_hex(8)
        releases = self._pending.pop(key, [])
        try:
            granted = await self._acquire(keys=[key], args=[limit, max(int(ttl_s * 1000), 1), member, *releases])
        except aredis.redis_errors():
            self._pending[key].extend(releases)  # not applied: keep them for the next attempt
            raise errors.Unavailable("the shared cache (Redis) is unreachable", code="cache_unavailable") from None
        if not granted:
            raise _refused(limit)
        return member

    def release(self, sid: str, member: str) -> None:
        self._pending[self._key(sid)].append(member)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(RELEASE_FLUSH_S, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        pending, self._pending = self._pending, defaultdict(list)
        if pending:
            task = asyncio.get_running_loop().create_task(self._send(pending))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, pending: dict[str, list[str]]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, members in pending.items():
                pipe.zrem(key, *members)
            await pipe.execute()
        except aredis.redis_errors():
            pass  # each slot expires on its own: a lost release costs capacity for a while, not correctness

    async def drain(self) -> None:
        """Send every queued release now (tests; shutdown)."""
        if self._flush is not None:
            self._flush.cancel()
            self._start_flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)


class _LocalSlots:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    async def acquire(self, sid: str, limit: int, ttl_s: float) -> str:
        count = self._counts.get(sid, 0)
        if count >= limit:
            raise _refused(limit)
        self._counts[sid] = count + 1
        return sid

    def release(self, sid: str, member: str) -> None:
        remaining = self._counts.get(sid, 1) - 1
        if remaining <= 0:
            self._counts.pop(sid, None)
        else:
            self._counts[sid] = remaining

    async def drain(self) -> None:
        pass


_ledgers = per_loop(dict)


def slots() -> _RedisSlots | _LocalSlots:
    """This loop's ledger for the configured store (one per REDIS_URL: tests change it)."""
    ledgers = _ledgers()
    found = ledgers.get(settings.REDIS_URL)
    if found is None:
        found = ledgers[settings.REDIS_URL] = _RedisSlots() if settings.REDIS_URL else _LocalSlots()
    return found


@asynccontextmanager
async def session_slot(*, sid: str, longest_call_s: float, limit: int | None = None):
    """Hold one of the session's in-flight slots for the block, or TooManyInFlight (429). The slot
    expires on its own `longest_call_s` plus MCP_SESSION_SLOT_GRACE_SECONDS after it was taken."""
    ledger = slots()
    ttl_s = longest_call_s + settings.MCP_SESSION_SLOT_GRACE_SECONDS
    member = await ledger.acquire(sid, limit or settings.MCP_SESSION_MAX_IN_FLIGHT, ttl_s)
    try:
        yield
    finally:
        ledger.release(sid, member)
