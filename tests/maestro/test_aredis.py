"""The data plane's Redis client across a Redis restart: connections pooled before it are stale
afterwards, and none of them may fail a call once Redis is back (they once failed one call each:
503 `cache_unavailable` for calls long after the restart)."""

from __future__ import annotations

import asyncio

import pytest

from maestro import aredis
from mcp.services import limits
from tests.support.services import RedisServer


@pytest.fixture
def own_redis(settings):
    server = RedisServer().start()
    settings.REDIS_URL = server.url
    try:
        yield server
    finally:
        server.destroy()


async def at_once(count: int) -> list:
    """`count` commands at the same moment, so each needs a pooled connection of its own: cache
    reads and the in-flight slot script, as concurrent calls send them."""
    reads = [aredis.cache_get(f"k{n}") for n in range(count)]
    slots = [limits.slots().acquire(f"sid{n}", 10, 30.0) for n in range(count)]
    return await asyncio.gather(*reads, *slots, return_exceptions=True)


def test_connections_pooled_before_a_redis_restart_fail_no_command_after_it(own_redis):
    async def scenario() -> list:
        assert not [r for r in await at_once(8) if isinstance(r, Exception)]
        await asyncio.to_thread(own_redis.stop)  # the loop runs on meanwhile, as a worker's does
        await asyncio.to_thread(own_redis.start)
        return await at_once(8)

    failed = [repr(r) for r in asyncio.run(scenario()) if isinstance(r, Exception)]
    assert failed == []
