"""Reading sessions: the record shape both storage modes share, identifier checks, and listing.

With MCP_SESSIONS_PERSIST=true the table `mcp_sessions` answers; otherwise the per-run index in
Redis does (see docs/sessions.md for what that index can and cannot know).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from django.conf import settings

from maestro import errors
from sessions_app.models import McpSession
from sessions_app.runs import validate_run_id
from sessions_app.store import StoreUnavailable, get_store

SID_RE = re.compile(r"[0-9a-f]{32}")

ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _dt(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True)
class SessionRecord:
    """A session as the gateway knows it, from the table or from the Redis index."""

    sid: str
    run_id: str
    scopes: tuple[str, ...]
    servers: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    created_by: str

    def status(self, now: datetime | None = None) -> str:
        if self.revoked_at is not None:
            return REVOKED
        return EXPIRED if self.expires_at <= (now or datetime.now(tz=UTC)) else ACTIVE

    def revoked(self, at: datetime) -> SessionRecord:
        return replace(self, revoked_at=at)

    @classmethod
    def from_row(cls, row: McpSession) -> SessionRecord:
        return cls(
            sid=row.sid,
            run_id=row.run_id,
            scopes=tuple(row.scopes),
            servers=tuple(row.servers),
            issued_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            created_by=row.created_by,
        )

    @classmethod
    def from_index(cls, entry: dict) -> SessionRecord:
        return cls(
            sid=entry["sid"],
            run_id=entry["run_id"],
            scopes=tuple(entry["scopes"]),
            servers=tuple(entry["servers"]),
            issued_at=_dt(entry["issued_at"]),
            expires_at=_dt(entry["expires_at"]),
            revoked_at=_dt(entry.get("revoked_at")),
            created_by=entry["created_by"],
        )

    def to_index(self) -> dict:
        # Unix seconds, so the cleanup can compare expiries without parsing dates.
        return {
            "sid": self.sid,
            "run_id": self.run_id,
            "scopes": list(self.scopes),
            "servers": list(self.servers),
            "issued_at": _ts(self.issued_at),
            "expires_at": _ts(self.expires_at),
            "revoked_at": None if self.revoked_at is None else _ts(self.revoked_at),
            "created_by": self.created_by,
        }


class _RowRecords:
    """A queryset seen as a sequence of records, so DRF's paginator can count and slice it."""

    def __init__(self, queryset) -> None:
        self._queryset = queryset

    def count(self) -> int:
        return self._queryset.count()

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [SessionRecord.from_row(row) for row in self._queryset[index]]
        return SessionRecord.from_row(self._queryset[index])

    def __iter__(self):
        return (SessionRecord.from_row(row) for row in self._queryset)


def store_unavailable() -> errors.Unavailable:
    return errors.Unavailable("the session store (Redis) is unreachable", code="session_store_unavailable")


def session_list(*, run_id: str):
    """The run's sessions, newest first: a lazy sequence (persisted) or a list (Redis index)."""
    run_id = validate_run_id(run_id)
    if settings.MCP_SESSIONS_PERSIST:
        return _RowRecords(McpSession.objects.filter(run_id=run_id).order_by("-created_at", "sid"))
    try:
        entries = get_store().index_get(run_id)
    except StoreUnavailable:
        raise store_unavailable() from None
    return sorted((SessionRecord.from_index(e) for e in entries), key=lambda r: (-r.issued_at.timestamp(), r.sid))


def session_get(*, run_id: str, sid: str) -> SessionRecord:
    """One of the run's sessions, or `NotFound` (also for a sid that belongs to another run)."""
    run_id = validate_run_id(run_id)
    record = None
    if isinstance(sid, str) and SID_RE.fullmatch(sid):
        if settings.MCP_SESSIONS_PERSIST:
            row = McpSession.objects.filter(sid=sid, run_id=run_id).first()
            record = SessionRecord.from_row(row) if row else None
        else:
            try:
                entry = get_store().index_get_one(run_id, sid)
            except StoreUnavailable:
                raise store_unavailable() from None
            record = SessionRecord.from_index(entry) if entry else None
    if record is None:
        raise errors.NotFound(f"run {run_id!r} has no session {str(sid)[:64]!r}", code="session_not_found")
    return record
