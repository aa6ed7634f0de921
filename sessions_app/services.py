"""Run sessions: create, authenticate (every door), revoke, clean up.

The hot path, `session_authenticate`, costs one HMAC check and one Redis round trip and never
touches the database, except once after Redis has lost its data with persistence on (below).

Revocation lives in Redis as `rev:<sid>` keys that expire with the token, so every worker and
replica sees a revocation at once. With MCP_SESSIONS_PERSIST=true the table is the durable record,
and Redis is re-seeded from it when a flush is detected: a sentinel key, set after every re-seed,
is read in the same MGET as the revocation key. No sentinel means Redis restarted or was flushed;
that request asks the table about its own sid (one primary-key query) and, if it wins a short lock,
rebuilds every revocation key and sets the sentinel again. docs/sessions.md explains the choice.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from maestro import errors, metrics, telemetry
from maestro.db import RowInserter
from sessions_app import scopes as S
from sessions_app import tokens
from sessions_app.models import McpSession
from sessions_app.runs import validate_run_id
from sessions_app.selectors import SessionRecord, persisted_revoked_sid, session_get, store_unavailable
from sessions_app.store import StoreUnavailable, get_store
from sessions_app.tokens import SessionClaims

__all__ = [
    "SessionClaims",
    "bearer_token",
    "on_session_end",
    "rebuild_revocations",
    "session_authenticate",
    "session_create",
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
REBUILD_LOCK_SECONDS = 60


def _revocation_unavailable() -> errors.Unavailable:
    return errors.Unavailable("the revocation store (Redis) is unreachable: no session token can be accepted", code="revocation_unavailable")


# --- authenticate: the one verification function for every door -------------------------------


def bearer_token(authorization: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header; None when there is none."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise errors.Unauthenticated("use Authorization: Bearer <session token>", code="malformed_token")
    return value.strip()


def session_authenticate(*, token: str | None, run_id: str) -> SessionClaims:
    """The verified claims of a session token used on `run_id`'s URL.

    Unauthenticated: missing_token, malformed_token, invalid_signature, token_expired, invalid_token,
    session_revoked. Forbidden: run_mismatch. Unavailable: revocation_unavailable (fail closed).
    """
    if not token:
        raise errors.Unauthenticated("a session token is required: Authorization: Bearer <token>", code="missing_token")
    claims = tokens.verify(token)
    if claims.run_id != run_id:
        raise errors.Forbidden("this session token belongs to another run", code="run_mismatch")
    if _is_revoked(claims):
        raise errors.Unauthenticated("the session has been revoked", code="session_revoked")
    return claims


def _is_revoked(claims: SessionClaims) -> bool:
    store = get_store()
    try:
        if not settings.MCP_SESSIONS_PERSIST:
            return store.is_revoked(claims.sid)
        revoked, sentinel = store.is_revoked_with_sentinel(claims.sid)
        if revoked or sentinel:
            return revoked
        return _recover_after_flush(store, claims)
    except StoreUnavailable:
        raise _revocation_unavailable() from None


def _recover_after_flush(store, claims: SessionClaims) -> bool:
    """Redis lost its data: answer this sid from the table, and let one caller re-seed the rest."""
    revoked = persisted_revoked_sid(claims.sid)
    if revoked:
        store.mark_revoked([(claims.sid, _seconds_left(claims.expires_at))])
    if store.try_lock(REBUILD_LOCK_SECONDS):
        try:
            rebuild_revocations(store)
        except (DatabaseError, StoreUnavailable):
            # This request's answer is already right; the next one without a sentinel retries.
            logger.exception("re-seeding revocations from mcp_sessions failed")
        finally:
            store.unlock()
    return revoked


def _seconds_left(expires_at: float) -> int:
    """How long a revocation key must live: until the token is dead, leeway included."""
    return math.ceil(expires_at + settings.SESSION_TOKEN_LEEWAY_SECONDS - time.time())


def rebuild_revocations(store=None) -> int:
    """Write a revocation key for every revoked, unexpired persisted session, then the sentinel
    (last, so no reader trusts a half-built set). Idempotent; the cleanup also runs it to repair
    a revocation whose Redis write failed."""
    store = store or get_store()
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
    store.set_sentinel()
    return count + len(batch)


# --- create -------------------------------------------------------------------------------------


def _invalid(field: str, message: str, code: str) -> errors.InvalidInput:
    return errors.InvalidInput(f"{field}: {message}", code=code, details={"field": field})


def _validate_ttl(ttl_seconds) -> int:
    limit = settings.SESSION_TTL_SECONDS
    if ttl_seconds is None:
        return limit
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= limit:
        raise _invalid("ttl_seconds", f"use a whole number of seconds between 1 and {limit}", "invalid_ttl")
    return ttl_seconds


def _validate_scopes(scopes) -> list[str]:
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
        known = S.SESSION_SCOPES | _registered_server_scopes()
        missing = [s for s in unknown if s not in known]
        if missing:
            raise _invalid(
                "scopes",
                f"unknown scope {missing[0]!r}: use {', '.join(sorted(S.SESSION_SCOPES))} or a scope a registered server requires",
                "unknown_scope",
            )
    return cleaned


def _server_model():
    # Imported lazily: sessions_app must not depend on the registry app at import time.
    try:
        from mcp.models import McpServer
    except ImportError:
        return None
    return McpServer


def _registered_server_scopes() -> set[str]:
    """Scopes that some registered server requires; queried only for a scope outside the
    built-in session scopes, so the common create costs no query here."""
    McpServer = _server_model()
    if McpServer is None or "scopes" not in {f.name for f in McpServer._meta.get_fields()}:
        return set()
    known: set[str] = set()
    for value in McpServer.objects.values_list("scopes", flat=True):
        if isinstance(value, list):
            known.update(s for s in value if isinstance(s, str))
    return known


def _resolve_servers(servers) -> list[str]:
    """Server ids (as strings) for a list of ids or names, in the caller's order, deduplicated."""
    if servers is None:
        return []
    if not isinstance(servers, (list, tuple)):
        raise _invalid("servers", "give a list of server ids or names", "invalid_servers")
    if len(servers) > MAX_SERVERS:
        raise _invalid("servers", f"at most {MAX_SERVERS} servers", "invalid_servers")
    if not servers:
        return []
    for value in servers:
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise _invalid("servers", f"{str(value)[:80]!r} is not a server id or name", "invalid_servers")
    ids = {}
    for value in servers:
        try:
            ids[value] = str(uuid.UUID(value))
        except ValueError:
            pass
    McpServer = _server_model()
    rows = []
    if McpServer is not None:
        rows = McpServer.objects.filter(Q(id__in=set(ids.values())) | Q(name__in=set(servers))).values_list("id", "name")
    by_id, by_name = {}, {}
    for server_id, name in rows:
        by_id[str(server_id)] = str(server_id)
        by_name[name] = str(server_id)
    resolved: list[str] = []
    for value in servers:
        found = by_id.get(ids.get(value, "")) or by_name.get(value)
        if found is None:
            raise _invalid("servers", f"unknown server {value[:80]!r}", "unknown_server")
        if found not in resolved:
            resolved.append(found)
    return resolved


def session_create(*, run_id: str, scopes, servers=None, ttl_seconds=None, created_by: str) -> tuple[SessionRecord, str]:
    """A new session for `run_id` and its token (returned once, never stored).

    Persisted: one INSERT (written by hand: maestro.db), no cache write. Not persisted: one Redis
    round trip (the run index). Traced as `mcp.session.create` (run, scopes, servers, ttl; never
    the sid or the token).
    """
    with telemetry.span("mcp.session.create", run=str(run_id)[:128]) as span:
        run_id = validate_run_id(run_id)
        ttl = _validate_ttl(ttl_seconds)
        scope_list = _validate_scopes(scopes)
        server_ids = _resolve_servers(servers)
        span.set_attributes({"scopes": scope_list, "servers": server_ids, "ttl_seconds": ttl, "persist": settings.MCP_SESSIONS_PERSIST})
        record, token = _session_issue(run_id=run_id, ttl=ttl, scope_list=scope_list, server_ids=server_ids, created_by=created_by)
    metrics.record_session(event="created")
    return record, token


def _session_issue(*, run_id: str, ttl: int, scope_list: list[str], server_ids: list[str], created_by: str) -> tuple[SessionRecord, str]:
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
        try:
            _SESSION_ROWS.insert([{
                "sid": record.sid, "run_id": run_id, "scopes": scope_list, "servers": server_ids,
                "created_at": record.issued_at, "expires_at": record.expires_at, "revoked_at": None,
                "created_by": record.created_by,
            }])
        except OperationalError as exc:
            raise errors.Unavailable("the session could not be recorded in the database", code="database_unavailable") from exc
    else:
        # The index outlives the session by the leeway plus one cleanup interval, so an expired
        # session still lists as "expired" until the cleanup removes it.
        keep = ttl + settings.SESSION_TOKEN_LEEWAY_SECONDS + settings.MCP_SESSION_CLEANUP_INTERVAL_SECONDS
        try:
            get_store().index_put(run_id, record.to_index(), keep)
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
