"""Authenticating a run's session token: the one function every data-plane door calls.

`session_authenticate` costs one HMAC check and, in the common case, no I/O at all: revocation is
answered by this process's in-process set (sessions_app.revocation) while that set is provably
current. Otherwise one Redis round trip answers (`rev:<sid>` and, with persistence, the flush
sentinel in one MGET); with MCP_SESSIONS_PERSIST=true and Redis unreachable or flushed, the table
answers for this sid. Without persistence and without Redis, no token is accepted (fail closed).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from django.conf import settings

from maestro import adb, aredis, errors, telemetry
from sessions_app import revocation, tokens
from sessions_app.store import RedisStore, get_store
from sessions_app.tokens import SessionClaims

logger = logging.getLogger("maestro.sessions")


def revocation_unavailable() -> errors.Unavailable:
    return errors.Unavailable("the revocation store (Redis) is unreachable: no session token can be accepted", code="revocation_unavailable")


def bearer_token(authorization: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header; None when there is none."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise errors.Unauthenticated("use Authorization: Bearer <session token>", code="malformed_token")
    return value.strip()


async def session_authenticate(*, token: str | None, run_id: str) -> SessionClaims:
    """The verified claims of a session token used on `run_id`'s URL.

    Unauthenticated: missing_token, malformed_token, invalid_signature, token_expired, invalid_token,
    session_revoked. Forbidden: run_mismatch. Unavailable: revocation_unavailable (fail closed).
    """
    with telemetry.span("mcp.session.authenticate", run=run_id[:128] if isinstance(run_id, str) else None):
        if not token:
            raise errors.Unauthenticated("a session token is required: Authorization: Bearer <token>", code="missing_token")
        claims = tokens.verify(token)
        if claims.run_id != run_id:
            raise errors.Forbidden("this session token belongs to another run", code="run_mismatch")
        if await session_is_revoked(sid=claims.sid):
            raise errors.Unauthenticated("the session has been revoked", code="session_revoked")
        return claims


_checking: dict[str, asyncio.Task] = {}


async def session_is_revoked(*, sid: str) -> bool:
    watch = revocation.watch()
    if watch is not None:
        known = watch.known(sid)
        if known is not None:
            return known
    # Concurrent checks of one session share one look-up (10,000 MCP streams of one token opening
    # at once cost one round trip, not 10,000): a check that joins one in flight gets the answer
    # of a read at most one round trip old, as if it had arrived that much earlier. The look-up is
    # a task of its own, so a caller that goes away does not take it from the others.
    loop = asyncio.get_running_loop()
    task = _checking.get(sid)
    if task is None or task.get_loop() is not loop or task.done():
        task = _checking[sid] = loop.create_task(_look_up(sid))
        task.add_done_callback(functools.partial(_checked, sid))
    return await asyncio.shield(task)


def _checked(sid: str, task: asyncio.Task) -> None:
    if _checking.get(sid) is task:
        del _checking[sid]
    if not task.cancelled():
        task.exception()  # retrieved: no warning when every caller went away before it ended


async def _look_up(sid: str) -> bool:
    store = get_store()
    try:
        revoked, sentinel = await _store_check(store, sid)
    except aredis.redis_errors():
        if not settings.MCP_SESSIONS_PERSIST:
            raise revocation_unavailable() from None
        logger.warning("Redis unreachable: answering a revocation check from mcp_sessions")
        return await _table_says_revoked(sid)
    if revoked or sentinel or not settings.MCP_SESSIONS_PERSIST:
        return revoked
    # Persistence on and no sentinel: Redis lost its data. This sid is answered from the table,
    # and one process re-seeds the rest in the background.
    revocation.reseed_soon(store)
    return await _table_says_revoked(sid)


async def _store_check(store, sid: str) -> tuple[bool, bool]:
    """(revoked, sentinel present): one round trip (MGET), or a local read of the embedded file
    cache, off the loop. Without persistence there is no sentinel to read."""
    if not isinstance(store, RedisStore):
        if settings.MCP_SESSIONS_PERSIST:
            return await asyncio.to_thread(store.is_revoked_with_sentinel, sid)
        return await asyncio.to_thread(store.is_revoked, sid), True
    if settings.MCP_SESSIONS_PERSIST:
        revoked, sentinel = await aredis.client().mget(store.rev_key(sid), store.sentinel_key)
        return revoked is not None, sentinel is not None
    return await aredis.client().get(store.rev_key(sid)) is not None, True


async def _table_says_revoked(sid: str) -> bool:
    from sessions_app.models import McpSession

    try:
        rows = await adb.database().fetchall(
            f"SELECT 1 FROM {McpSession._meta.db_table} WHERE sid = %s AND revoked_at IS NOT NULL", [sid]
        )
    except adb.DatabaseFailure:
        raise errors.Unavailable("neither Redis nor the database can confirm the session is not revoked", code="revocation_unavailable") from None
    return bool(rows)
