"""The endpoint's own MCP sessions (revisions 2025-03-26 to 2025-11-25: `Mcp-Session-Id`).

An id is 32 random bytes (URL-safe text), minted by `initialize` and kept in the shared cache
(Redis; the embedded cache without it) as {token's session id, revision}, for as long as the
token lives. So any worker or replica continues a session (no sticky routing), a session id is
bound to the token that opened it (used with another token it is unknown: 404, as the spec says
for an unknown id, so a leaked id alone reveals nothing), and it ends with the token, on DELETE,
or when the token's session is revoked (the token is refused first).
"""

from __future__ import annotations

import re
import secrets
import time

from maestro import aredis, errors
from mcp.services import changes
from sessions_app.tokens import SessionClaims

_KEY = "mcp:endpoint:session:{id}"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
LOCAL_SECONDS = 5.0
LOCAL_MAX = 50_000
_local: dict[str, tuple[float, dict]] = {}


def local_forget(session_id: str | None = None) -> None:
    """Forget one remembered session (an event said it ended or changed), or all of them."""
    if session_id is None:
        _local.clear()
    else:
        _local.pop(session_id, None)


async def _announce(session_id: str) -> None:
    local_forget(session_id)
    await changes.event_publish_async(event={"mcp_session": session_id})


class SessionUnknown(errors.NotFound):
    code = "mcp_session_unknown"


def _unavailable() -> errors.Unavailable:
    return errors.Unavailable("the shared cache is unavailable, so MCP sessions cannot be kept", code="cache_unavailable")


async def mcp_session_open(*, claims: SessionClaims, version: str) -> str:
    session_id = secrets.token_urlsafe(32)
    ttl = max(1, int(claims.expires_at - time.time()) + 1)
    try:
        await aredis.cache_set(_KEY.format(id=session_id), {"sid": claims.sid, "v": version}, ttl)
    except aredis.CacheUnavailable:
        raise _unavailable() from None
    return session_id


async def mcp_session_get(*, claims: SessionClaims, session_id: str) -> dict:
    """{"v": the revision the session settled on, "level": its log level or None}, or
    SessionUnknown (unknown, ended, or another token's)."""
    if not _ID_RE.fullmatch(session_id):
        raise SessionUnknown("unknown MCP session: initialize a new one")
    hit = _local.get(session_id)
    if hit is not None and hit[0] > time.monotonic():
        entry = hit[1]
    else:
        try:
            entry = await aredis.cache_get(_KEY.format(id=session_id))
        except aredis.CacheUnavailable:
            raise _unavailable() from None
        if isinstance(entry, dict):
            if len(_local) >= LOCAL_MAX:
                _local.clear()
            _local[session_id] = (time.monotonic() + LOCAL_SECONDS, entry)
    if not isinstance(entry, dict) or entry.get("sid") != claims.sid:
        raise SessionUnknown("unknown MCP session: initialize a new one")
    return entry


async def mcp_session_set_level(*, claims: SessionClaims, session_id: str, level: str) -> None:
    entry = await mcp_session_get(claims=claims, session_id=session_id)
    ttl = max(1, int(claims.expires_at - time.time()) + 1)
    try:
        await aredis.cache_set(_KEY.format(id=session_id), {**entry, "level": level}, ttl)
    except aredis.CacheUnavailable:
        raise _unavailable() from None
    await _announce(session_id)


_STREAM_KEY = "mcp:endpoint:stream:{id}"
STREAM_CLAIM_SECONDS = 40  # renewed at every keep-alive (15 s): a dead worker's claim lapses


async def mcp_session_stream_claim(*, session_id: str, renew: bool = False) -> bool:
    """The session's one GET stream (the spec: a message goes on one stream only, so a second GET
    stream is refused, on any worker). False when another stream holds it."""
    try:
        if renew:
            await aredis.cache_set(_STREAM_KEY.format(id=session_id), 1, STREAM_CLAIM_SECONDS)
            return True
        return await aredis.cache_add(_STREAM_KEY.format(id=session_id), 1, STREAM_CLAIM_SECONDS)
    except aredis.CacheUnavailable:
        raise _unavailable() from None


async def mcp_session_stream_release(*, session_id: str) -> None:
    try:
        await aredis.cache_delete(_STREAM_KEY.format(id=session_id))
    except aredis.CacheUnavailable:
        pass  # it lapses on its own


async def mcp_session_close(*, claims: SessionClaims, session_id: str) -> None:
    await mcp_session_get(claims=claims, session_id=session_id)
    try:
        await aredis.cache_delete(_KEY.format(id=session_id))
    except aredis.CacheUnavailable:
        raise _unavailable() from None
    await _announce(session_id)
