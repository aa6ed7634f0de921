"""Per-session in-flight limit. With Redis the count is shared by every worker and replica (one
pipelined INCR+EXPIRE on entry, one DECR on exit); with the in-process cache it is this
process's count, which is all there is in the embedded single-process mode."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from django.conf import settings

from maestro import errors

_KEY = "mcp:inflight:{sid}"
# A crashed worker never decrements: the key's expiry bounds how long its slots stay taken.
_SLOT_TTL_SECONDS = 600

_local_counts: dict[str, int] = {}
_local_lock = threading.Lock()


class TooManyInFlight(errors.RateLimited):
    code = "too_many_in_flight"


def _redis():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


@contextmanager
def session_slot(*, sid: str, limit: int | None = None):
    limit = limit or settings.MCP_SESSION_MAX_IN_FLIGHT
    if settings.REDIS_URL:
        key = _KEY.format(sid=sid)
        try:
            client = _redis()
            pipe = client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, _SLOT_TTL_SECONDS)
            count = pipe.execute()[0]
        except Exception:
            raise errors.Unavailable("the shared cache (Redis) is unreachable", code="cache_unavailable") from None
        try:
            if count > limit:
                raise TooManyInFlight(f"this session already has {limit} invocations in flight")
            yield
        finally:
            try:
                client.decr(key)
            except Exception:
                pass  # the key's TTL bounds the damage of a lost decrement
        return
    with _local_lock:
        count = _local_counts.get(sid, 0) + 1
        _local_counts[sid] = count
    try:
        if count > limit:
            raise TooManyInFlight(f"this session already has {limit} invocations in flight")
        yield
    finally:
        with _local_lock:
            remaining = _local_counts.get(sid, 1) - 1
            if remaining <= 0:
                _local_counts.pop(sid, None)
            else:
                _local_counts[sid] = remaining
