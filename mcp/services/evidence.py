"""Tamper-evident evidence: one row per invocation attempt, hash-chained per run.

row.hash = SHA-256(prev_hash + "\n" + canonical JSON of the row's fields, seq included), so
editing, deleting or reordering any row breaks verification from that row on.

Writing is one INSERT on the common path. The chain head (last seq and hash) of each run is
remembered in-process, and concurrent writers of one run in this process take turns on a per-run
lock. Across processes the unique (run_id, seq) constraint is the arbiter: a writer whose head was
stale loses the insert, re-reads the head and retries, so the chain can never fork or gap.

The INSERT is written by hand (not Model.save): on the invoke path the ORM's model construction
and SQL compilation cost more CPU than the round trip itself. Values still go through each
field's own database conversion, so the row is exactly what the ORM would have written.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from maestro import errors
from mcp.canonical import canonical_json
from mcp.models import Invocation

logger = logging.getLogger("mcp.evidence")
GENESIS = "0" * 64
_MAX_RETRIES = 200
_HEADS_MAX = 20_000

_heads: OrderedDict[str, tuple[int, str]] = OrderedDict()
_heads_lock = threading.Lock()
_run_locks: dict[str, threading.Lock] = {}


@dataclass(frozen=True)
class EvidenceRow:
    id: uuid.UUID
    seq: int
    hash: str
    latency_us: int


@dataclass(frozen=True)
class EvidenceEntry:
    run_id: str
    session_id: str
    server_id: str
    server_name: str
    tool: str
    arguments_digest: str
    result_digest: str
    status: str  # success | error | denied
    error_code: str
    is_error: bool
    latency_us: int
    receipt: str
    transport: str


HASHED_FIELDS = (
    "id", "run_id", "seq", "session_id", "server_id", "server_name", "tool", "arguments_digest", "result_digest",
    "status", "error_code", "is_error", "latency_us", "receipt", "transport", "created_at",
)


def row_hash(*, prev_hash: str, fields: dict) -> str:
    values = [fields[name].isoformat() if isinstance(fields[name], datetime) else fields[name] for name in HASHED_FIELDS]
    values[0] = str(values[0])
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(values)).hexdigest()


def _run_lock(run_id: str) -> threading.Lock:
    lock = _run_locks.get(run_id)
    if lock is None:
        with _heads_lock:
            lock = _run_locks.setdefault(run_id, threading.Lock())
            if len(_run_locks) > _HEADS_MAX:
                # Dropping idle locks is safe: the unique constraint, not the lock, guarantees the chain.
                for key in list(_run_locks)[: _HEADS_MAX // 2]:
                    if key != run_id and not _run_locks[key].locked():
                        _run_locks.pop(key, None)
    return lock


_INSERT_FIELDS = [Invocation._meta.get_field(name) for name in (*HASHED_FIELDS, "prev_hash", "hash")]
_INSERT_SQL: dict[str, str] = {}  # by database vendor


def _insert(fields: dict) -> None:
    sql = _INSERT_SQL.get(connection.vendor)
    if sql is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in _INSERT_FIELDS)
        sql = _INSERT_SQL[connection.vendor] = (
            f"INSERT INTO {quote(Invocation._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(_INSERT_FIELDS))})"
        )
    params = [field.get_db_prep_save(fields[field.name], connection) for field in _INSERT_FIELDS]
    # A thread's own long-lived connection (DATABASE_POOL_SIZE=0): skip Django's per-request
    # liveness ping (CONN_HEALTH_CHECKS), a whole extra round trip on every invocation. If the
    # connection died since its last use, this INSERT fails instead, and is sent once more on a new
    # one. (Pooled connections are checked by the pool when handed out; nothing to do here.)
    reused = connection.connection is not None and transaction.get_autocommit()
    if reused:
        connection.health_check_done = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    except (OperationalError, InterfaceError):
        if not reused:
            raise
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _read_head(run_id: str) -> tuple[int, str]:
    last = Invocation.objects.filter(run_id=run_id).order_by("-seq").values_list("seq", "hash").first()
    return last if last else (0, GENESIS)


def _remember(run_id: str, head: tuple[int, str]) -> None:
    with _heads_lock:
        _heads[run_id] = head
        _heads.move_to_end(run_id)
        while len(_heads) > _HEADS_MAX:
            _heads.popitem(last=False)


def _forget(run_id: str) -> None:
    with _heads_lock:
        _heads.pop(run_id, None)


def local_cache_clear() -> None:
    """Forget remembered chain heads (tests roll the database back behind this cache's back)."""
    with _heads_lock:
        _heads.clear()


def evidence_append(*, entry: EvidenceEntry) -> EvidenceRow:
    """Commit one evidence row and return it (with seq and hash). When the database cannot take
    it, the call fails (503 evidence_unavailable): no result leaves the gateway unrecorded."""
    try:
        return _append(entry)
    except DatabaseError:
        logger.exception("evidence write failed", extra={"run": entry.run_id})
        raise errors.Unavailable("the evidence store (database) is unavailable", code="evidence_unavailable") from None


def _append(entry: EvidenceEntry) -> EvidenceRow:
    run_id = entry.run_id
    with _run_lock(run_id):
        head = _heads.get(run_id)
        sent_hash = None
        for _ in range(_MAX_RETRIES):
            if head is None:
                head = _read_head(run_id)
                if sent_hash is not None and head[1] == sent_hash:
                    # Our own INSERT did commit (its answer was lost and the retry collided with it).
                    _remember(run_id, head)
                    return EvidenceRow(id=sent_id, seq=head[0], hash=sent_hash, latency_us=entry.latency_us)
            seq, prev_hash = head[0] + 1, head[1]
            fields = {**entry.__dict__, "id": uuid.uuid4(), "seq": seq, "created_at": timezone.now(), "prev_hash": prev_hash}
            fields["hash"] = row_hash(prev_hash=prev_hash, fields=fields)
            sent_hash, sent_id = fields["hash"], fields["id"]
            try:
                if transaction.get_autocommit():
                    _insert(fields)
                else:
                    with transaction.atomic():  # a savepoint: a lost race must not poison the caller's transaction
                        _insert(fields)
            except IntegrityError:
                # Another process extended this run's chain first: re-read the head and go again.
                _forget(run_id)
                head = None
                continue
            _remember(run_id, (seq, fields["hash"]))
            return EvidenceRow(id=fields["id"], seq=seq, hash=fields["hash"], latency_us=entry.latency_us)
    raise RuntimeError(f"evidence chain for run {run_id!r} stayed contended after {_MAX_RETRIES} attempts")


def evidence_verify(*, run_id: str) -> dict:
    """{"chain": "valid", "length": n} or {"chain": "broken", "at_seq": n, "reason": ...}."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for row in Invocation.objects.filter(run_id=run_id).order_by("seq").iterator(chunk_size=2000):
        fields = {name: getattr(row, name) for name in HASHED_FIELDS}
        if row.seq != expected_seq:
            return {"chain": "broken", "at_seq": expected_seq, "reason": f"row {expected_seq} is missing (next is {row.seq})", "length": count}
        if row.prev_hash != prev_hash:
            return {"chain": "broken", "at_seq": row.seq, "reason": "prev_hash does not match the previous row's hash", "length": count}
        if row_hash(prev_hash=prev_hash, fields=fields) != row.hash:
            return {"chain": "broken", "at_seq": row.seq, "reason": "row content does not match its hash", "length": count}
        prev_hash, expected_seq, count = row.hash, expected_seq + 1, count + 1
    return {"chain": "valid", "length": count, "head": prev_hash if count else None}
