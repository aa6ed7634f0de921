"""Run sessions: create (the data plane, async), revoke and clean up (the control plane).

Authentication of a session token, the hot path, is `sessions_app.verify.session_authenticate`.

Revocation lives in Redis (`sessions_app.store`): keys that expire with the token, a sorted set and
a pub/sub message, so every worker and replica sees a revocation within a second. With
MCP_SESSIONS_PERSIST=true the table is the durable record, and Redis is re-seeded from it when a
flush is detected: a sentinel key, set after every re-seed, says Redis still holds what the table
says. `rebuild_revocations` does the re-seeding.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from maestro import adb, errors, metrics, telemetry
from maestro.db import RowInserter
from sessions_app import scopes as S
from sessions_app import tokens
from sessions_app.models import McpSession
from sessions_app.runs import validate_run_id
from sessions_app.selectors import SessionRecord, session_get, store_unavailable
from sessions_app.store import RedisStore, StoreUnavailable, get_store
from sessions_app.tokens import SessionClaims

__all__ = [
    "SessionClaims",
    "ServerDirectory",
    "on_session_end",
    "rebuild_revocations",
    "session_create",
    "session_request_parse",
    "session_revoke",
    "session_revoke_run",
    "sessions_cleanup_expired",
    "validate_run_id",
]

logger = logging.getLogger("maestro.sessions")
_SESSION_ROWS = RowInserter(McpSession, ("sid", "run_id", "scopes", "servers", "expires_at", "revoked_at", "created_at", "created_by"))

# Called with the sid of every session that ended (revoked, or removed by the cleanup after it
# expired), e.g. by the invoke app to close the session's upstream MCP sessions. A hook may be
# called more than once for one sid and must be quick (enqueue slow work); its errors are logged.
on_session_end: list[Callable[[str], None]] = []

# The registry's own rule for the scopes a server requires (mcp.models.SCOPE_RE), so every scope
# a server can demand can also be granted.
SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,63}")
MAX_SCOPES = 32
MAX_SERVERS = 100


def _seconds_left(expires_at: float) -> int:
    """How long a revocation key must live: until the token is dead, leeway included."""
    return math.ceil(expires_at + settings.SESSION_TOKEN_LEEWAY_SECONDS - time.time())


def rebuild_revocations(store=None) -> int:
    """Write a revocation key for every revoked, unexpired persisted session, then the sentinel
    (last, so no reader trusts a half-built set; and not at all if Redis lost its data meanwhile,
    which could have taken a revocation made after the table was read). Idempotent; the cleanup
    also runs it to repair a revocation whose Redis write failed."""
    store = store or get_store()
    marker = store.rebuild_begin()  # before the table is read
    horizon = timezone.now() - timedelta(seconds=settings.SESSION_TOKEN_LEEWAY_SECONDS)
    rows = McpSession.objects.filter(revoked_at__isnull=False, expires_at__gt=horizon).values_list("sid", "expires_at")
    batch: list[tuple[str, int]] = []
    count = 0
    for sid, expires_at in rows.iterator(chunk_size=2000):
        batch.append((sid, _seconds_left(expires_at.timestamp())))
        if len(batch) >= 2000:
            store.mark_revoked(batch)
            count, batch = count + len(batch), []
    store.mark_revoked(batch)
    store.set_sentinel(marker=marker)
    return count + len(batch)


# --- create -------------------------------------------------------------------------------------


class ServerDirectory:
    """What session creation needs to know about registered servers, without importing the
    registry (layers point one way): the registry app installs its own at start-up
    (mcp.apps.McpConfig.ready). This default knows no servers."""

    async def resolve(self, ref: str) -> str | None:
        """The id of the server with this id or name, or None."""
        return None

    async def required_scopes(self) -> set[str]:
        """Every scope some registered server requires."""
        return set()


server_directory: ServerDirectory = ServerDirectory()


def _invalid(field: str, message: str, code: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"{field}: {message}", code=code, details={"field": field})


CREATE_FIELDS = ("scopes", "servers", "ttl_seconds")


def session_request_parse(body) -> dict:
    """The fields of a session request body (a JSON object), or InvalidInput naming the first
    field at fault. Types only; the values are checked by `session_create`."""
    if not isinstance(body, dict):
        raise errors.InvalidInput("request body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise _invalid(str(unknown[0])[:64], "unknown field; expected scopes, servers, ttl_seconds", "invalid_request")
    if "scopes" not in body:
        raise _invalid("scopes", "this field is required", "invalid_scopes")
    return {key: body[key] for key in CREATE_FIELDS if key in body}


def _validate_ttl(ttl_seconds) -> int:
    limit = settings.SESSION_TTL_SECONDS
    if ttl_seconds is None:
        return limit
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= limit:
        raise _invalid("ttl_seconds", f"use a whole number of seconds between 1 and {limit}", "invalid_ttl")
    return ttl_seconds


async def _validate_scopes(scopes) -> list[str]:
    if not isinstance(scopes, (list, tuple)) or not scopes:
        raise _invalid("scopes", "give a non-empty list of scopes, e.g. [\"mcp:invoke\"]", "invalid_scopes")
    if len(scopes) > MAX_SCOPES:
        raise _invalid("scopes", f"at most {MAX_SCOPES} scopes", "invalid_scopes")
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_RE.fullmatch(scope):
            raise _invalid("scopes", f"{str(scope)[:80]!r} is not a scope: use up to 64 letters, digits, ':', '.', '_' or '-'", "invalid_scopes")
    cleaned = sorted(set(scopes))
    unknown = [s for s in cleaned if s not in S.SESSION_SCOPES]
    if unknown:
        known = S.SESSION_SCOPES | await server_directory.required_scopes()
        missing = [s for s in unknown if s not in known]
        if missing:
            raise _invalid(
                "scopes",
                f"unknown scope {missing[0]!r}: use {', '.join(sorted(S.SESSION_SCOPES))} or a scope a registered server requires",
                "unknown_scope",
            )
    return cleaned


async def _resolve_servers(servers) -> list[str]:
    """Server ids (as strings) for a list of ids or names, in the caller's order, deduplicated."""
    if servers is None:
        return []
    if not isinstance(servers, (list, tuple)):
        raise _invalid("servers", "give a list of server ids or names", "invalid_servers")
    if len(servers) > MAX_SERVERS:
        raise _invalid("servers", f"at most {MAX_SERVERS} servers", "invalid_servers")
    for value in servers:
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise _invalid("servers", f"{str(value)[:80]!r} is not a server id or name", "invalid_servers")
    resolved: list[str] = []
    for value in servers:
        found = await server_directory.resolve(value)
        if found is None:
            raise _invalid("servers", f"unknown server {value[:80]!r}", "unknown_server")
        if found not in resolved:
            resolved.append(found)
    return resolved


async def session_create(*, run_id: str, scopes, servers=None, ttl_seconds=None, created_by: str) -> tuple[SessionRecord, str]:
    """A new session for `run_id` and its token (returned once, never stored).

    Persisted: one INSERT (written by hand: maestro.db), no cache write. Not persisted: one Redis
    round trip (the run index). Server names resolve from the registry's in-process cache. Traced
    as `mcp.session.create` (run, scopes, servers, ttl; never the sid or the token).
    """
    with telemetry.span("mcp.session.create", run=str(run_id)[:128]) as span:
        run_id = validate_run_id(run_id)
        ttl = _validate_ttl(ttl_seconds)
        scope_list = await _validate_scopes(scopes)
        server_ids = await _resolve_servers(servers)
        span.set_attributes({"scopes": scope_list, "servers": server_ids, "ttl_seconds": ttl, "persist": settings.MCP_SESSIONS_PERSIST})
        record, token = await _session_issue(run_id=run_id, ttl=ttl, scope_list=scope_list, server_ids=server_ids, created_by=created_by)
    metrics.record_session(event="created")
    return record, token


async def _session_issue(*, run_id: str, ttl: int, scope_list: list[str], server_ids: list[str], created_by: str) -> tuple[SessionRecord, str]:
    issued_at = int(time.time())
    record = SessionRecord(
        sid=uuid.uuid4().hex,
        run_id=run_id,
        scopes=tuple(scope_list),
        servers=tuple(server_ids),
        issued_at=datetime.fromtimestamp(issued_at, tz=UTC),
        expires_at=datetime.fromtimestamp(issued_at + ttl, tz=UTC),
        revoked_at=None,
        created_by=created_by[:160],
    )
    token = tokens.issue(
        sid=record.sid, run_id=run_id, scopes=scope_list, servers=server_ids, issued_at=issued_at, expires_at=issued_at + ttl
    )
    if settings.MCP_SESSIONS_PERSIST:
        row = {
            "sid": record.sid, "run_id": run_id, "scopes": scope_list, "servers": server_ids,
            "created_at": record.issued_at, "expires_at": record.expires_at, "revoked_at": None,
            "created_by": record.created_by,
        }
        try:
            await adb.database().execute(*_SESSION_ROWS.statement([row]))
        except adb.Conflict:
            pass  # a fresh random sid can only collide with this very INSERT, retried after a lost answer
        except adb.DatabaseFailure as exc:
            raise errors.Unavailable("the session could not be recorded in the database", code="database_unavailable") from exc
    else:
        # The index outlives the session by the leeway plus one cleanup interval, so an expired
        # session still lists as "expired" until the cleanup removes it.
        keep = ttl + settings.SESSION_TOKEN_LEEWAY_SECONDS + settings.MCP_SESSION_CLEANUP_INTERVAL_SECONDS
        store = get_store()
        try:
            if isinstance(store, RedisStore):
                await store.aindex_put(run_id, record.to_index(), keep)
            else:
                await asyncio.to_thread(store.index_put, run_id, record.to_index(), keep)
        except StoreUnavailable:
            raise store_unavailable() from None
    return record, token


# --- revoke -------------------------------------------------------------------------------------


def _publish(records: Iterable[SessionRecord]) -> None:
    """Make revocations visible to every worker (Redis), for as long as each token could live."""
    try:
        get_store().mark_revoked([(r.sid, _seconds_left(r.expires_at.timestamp())) for r in records])
    except StoreUnavailable:
        raise errors.Unavailable(
            "the revocation could not be published to Redis; retry (tokens are refused while Redis is unreachable)",
            code="revocation_unavailable",
        ) from None


def _ended(sids: Iterable[str]) -> None:
    for sid in sids:
        for hook in list(on_session_end):
            try:
                hook(sid)
            except Exception:
                logger.exception("on_session_end hook %r failed for session %s", getattr(hook, "__name__", hook), sid)


def session_revoke(*, run_id: str, sid: str) -> SessionRecord:
    """Revoke one session. Idempotent: revoking again re-publishes the key (which also repairs a
    publication that failed) and counts nothing. Unknown sid, or another run's: NotFound.
    Traced as `mcp.session.revoke` (run, whether it was revoked now; not the sid)."""
    with telemetry.span("mcp.session.revoke", run=str(run_id)[:128]) as span:
        record, newly = _revoke_one(run_id=run_id, sid=sid)
        span.set_attribute("revoked", newly)
    if newly:
        metrics.record_session(event="revoked")
        _ended([sid])
    return record


def _revoke_one(*, run_id: str, sid: str) -> tuple[SessionRecord, bool]:
    record = session_get(run_id=run_id, sid=sid)
    now = timezone.now()
    newly = record.revoked_at is None
    if newly:
        if settings.MCP_SESSIONS_PERSIST:
            # Durable first, then Redis: a failed publication is repaired by the next cleanup.
            newly = McpSession.objects.filter(sid=sid, revoked_at__isnull=True).update(revoked_at=now) == 1
            record = record.revoked(now) if newly else session_get(run_id=run_id, sid=sid)
        else:
            record = record.revoked(now)
            try:
                get_store().index_update(run_id, [record.to_index()])
            except StoreUnavailable:
                raise store_unavailable() from None
    _publish([record])
    return record, newly


def session_revoke_run(*, run_id: str) -> int:
    """Revoke every live session of a run (the run ended). Returns how many were revoked now.
    Traced as `mcp.session.revoke_run` (run, how many)."""
    with telemetry.span("mcp.session.revoke_run", run=str(run_id)[:128]) as span:
        records = _revoke_all(run_id=validate_run_id(run_id))
        span.set_attribute("revoked", len(records))
    if records:
        metrics.record_session(event="revoked", count=len(records))
        _ended(r.sid for r in records)
    return len(records)


def _revoke_all(*, run_id: str) -> list[SessionRecord]:
    now = timezone.now()
    if settings.MCP_SESSIONS_PERSIST:
        with transaction.atomic():
            rows = list(McpSession.objects.select_for_update().filter(run_id=run_id, revoked_at__isnull=True))
            McpSession.objects.filter(sid__in=[r.sid for r in rows]).update(revoked_at=now)
        records = [SessionRecord.from_row(r).revoked(now) for r in rows]
    else:
        store = get_store()
        try:
            entries = store.index_get(run_id)
            records = [SessionRecord.from_index(e).revoked(now) for e in entries if e.get("revoked_at") is None]
            store.index_update(run_id, [r.to_index() for r in records])
        except StoreUnavailable:
            raise store_unavailable() from None
    _publish(records)
    return records


# --- cleanup ------------------------------------------------------------------------------------


def sessions_cleanup_expired() -> int:
    """Delete what expired (past the leeway): table rows, run-index entries and their revocation
    keys, then call `on_session_end` for each. Returns how many sessions were removed. Revoked but
    unexpired sessions stay: their rows are what makes the revocation durable."""
    cutoff = timezone.now() - timedelta(seconds=settings.SESSION_TOKEN_LEEWAY_SECONDS)
    removed: set[str] = set()
    try:
        while True:
            batch = list(McpSession.objects.filter(expires_at__lt=cutoff).values_list("sid", flat=True)[:1000])
            if not batch:
                break
            McpSession.objects.filter(sid__in=batch).delete()
            removed.update(batch)
        store = get_store()
        try:
            removed.update(store.index_remove_expired(cutoff.timestamp()))
            store.forget(removed)
            if settings.MCP_SESSIONS_PERSIST:
                rebuild_revocations(store)
        except StoreUnavailable:
            raise store_unavailable() from None
    finally:
        _ended(sorted(removed))
    logger.info("session cleanup removed %d expired session(s)", len(removed))
    return len(removed)
