"""Redis and the shared cache for the asynchronous data plane.

`client()` is one `redis.asyncio` client per event loop (hiredis parses the replies), on the same
REDIS_URL and with the same 1-second socket timeouts as django-redis.

`cache_get` / `cache_set` / `cache_add` / `cache_delete` read and write the very entries Django's
cache (`django.core.cache.cache`) holds, so the control plane and the data plane share them: with
Redis, the same key layout as django-redis (`<KEY_PREFIX>:<version>:<key>`) and the same JSON
values (settings configure django-redis's JSON serializer for this); without Redis (the embedded
file cache), Django's cache itself, called off the loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django.conf import settings

from maestro.bridge import per_loop

SOCKET_TIMEOUT_S = 1.0  # to connect: a refused or unreachable Redis is known at once
# To answer, and to wait for a pooled connection: measured on this process's event loop, which a
# burst of thousands of calls keeps busy for seconds at a time, so a 1-second limit failed calls
# as "Redis unreachable" while Redis answered in microseconds (7 in 10 of 10,000 calls held open).
COMMAND_TIMEOUT_S = 5.0
POOL_CONNECTIONS = 64  # per process and client


class CacheUnavailable(Exception):
    pass


_clients = per_loop(dict)
REVOCATION_WATCH_NAME = "maestro-revocation-watch"
LIST_CHANGES_NAME = "maestro-list-changes"


def client():
    """This loop's client for REDIS_URL (one per URL: tests point REDIS_URL elsewhere)."""
    return _client(retry=True)


def subscriber():
    """A client for subscriptions (the revocation watch): one whose connection drops with an
    error, never reconnects and re-subscribes behind its user's back, because messages published
    in between would be lost without the user knowing it must read everything again. Its
    connections are named (CLIENT LIST shows which gateway connections follow revocations)."""
    return _client(retry=False)


def _client(*, retry: bool):
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    by_url = _clients()
    found = by_url.get((settings.REDIS_URL, retry))
    if found is None:
        # A few connections, blocking: a command holds one for a round trip, so a burst of
        # thousands of calls or MCP streams opening at once queues for a free one instead of
        # opening thousands (Redis refuses clients past `maxclients`, 10,000 by default, and
        # under such a burst the connects outlast their timeout). Measured with 10,000 calls held
        # open (make bench, scenario 6): 64 connections and 5 s answered 7,831; one connection
        # per waiting call and 1 s, 4,047; 512 and 5 s, 5,857.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            socket_timeout=COMMAND_TIMEOUT_S,
            max_connections=POOL_CONNECTIONS,
            timeout=COMMAND_TIMEOUT_S,
            health_check_interval=0,
            client_name=None if retry else REVOCATION_WATCH_NAME,
            # A pooled connection Redis closed (it restarted) is not noticed before use: the first
            # command on it fails. Once more on a new connection, at once, so a restart costs no
            # call. (A command that reached Redis before its connection broke may then run twice:
            # the commands here are reads, idempotent writes, and slots that expire on their own.)
            retry=Retry(NoBackoff(), 1 if retry else 0, supported_errors=(redis.ConnectionError,)),
            # No CLIENT SETINFO on every new connection: a round trip each, and nothing reads it.
            driver_info=None,
        )
        found = by_url[(settings.REDIS_URL, retry)] = aioredis.Redis(connection_pool=pool)
    return found


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError, asyncio.TimeoutError)


def _key(key: str) -> str:
    options = settings.CACHES["default"]
    return f"{options.get('KEY_PREFIX', '')}:{options.get('VERSION', 1)}:{key}"


def _loads(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


async def cache_get(key: str) -> Any:
    if not settings.REDIS_URL:
        from django.core.cache import cache

        return await asyncio.to_thread(cache.get, key)
    try:
        return _loads(await client().get(_key(key)))
    except redis_errors() as exc:
        raise CacheUnavailable(type(exc).__name__) from exc


async def cache_set(key: str, value: Any, ttl: int | None) -> None:
    if not settings.REDIS_URL:
        from django.core.cache import cache

        await asyncio.to_thread(cache.set, key, value, ttl)
        return
    try:
        await client().set(_key(key), json.dumps(value), ex=ttl)
    except redis_errors() as exc:
        raise CacheUnavailable(type(exc).__name__) from exc


async def cache_add(key: str, value: Any, ttl: int | None) -> bool:
    if not settings.REDIS_URL:
        from django.core.cache import cache

        return await asyncio.to_thread(cache.add, key, value, ttl)
    try:
        return bool(await client().set(_key(key), json.dumps(value), ex=ttl, nx=True))
    except redis_errors() as exc:
        raise CacheUnavailable(type(exc).__name__) from exc


async def cache_delete(key: str) -> None:
    if not settings.REDIS_URL:
        from django.core.cache import cache

        await asyncio.to_thread(cache.delete, key)
        return
    try:
        await client().delete(_key(key))
    except redis_errors() as exc:
        raise CacheUnavailable(type(exc).__name__) from exc
