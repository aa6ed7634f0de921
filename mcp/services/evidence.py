"""Tamper-evident evidence: one row per invocation attempt, hash-chained per run.

row.hash = SHA-256(prev_hash + "\n" + canonical JSON of the row's fields, seq included), so
editing, deleting or reordering any row breaks verification from that row on.

Writing is one INSERT on the common path. The chain head (last seq and hash) of each run is
remembered in-process, and concurrent writers of one run in this process are grouped into one
INSERT (see evidence_append). Across processes the unique (run_id, seq) constraint is the arbiter: a writer whose head was
stale loses the insert, re-reads the head and retries, so the chain can never fork or gap.

The INSERT is written by hand (maestro.db.RowInserter, not Model.save): on the invoke path the
ORM's model construction and SQL compilation cost more CPU than the round trip itself.
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
from maestro.db import RowInserter
from mcp.canonical import canonical_json
from mcp.models import Invocation

logger = logging.getLogger("mcp.evidence")
GENESIS = "0" * 64
_MAX_RETRIES = 200
MAX_BATCH = 200  # rows per INSERT: 18 parameters each, well inside PostgreSQL's and SQLite's limits
_HEADS_MAX = 20_000

_heads: OrderedDict[str, tuple[int, str]] = OrderedDict()
_heads_lock = threading.Lock()


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


class _Pending:
    __slots__ = ("entry", "row", "error")

    def __init__(self, entry: EvidenceEntry):
        self.entry = entry
        self.row: EvidenceRow | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.row is not None or self.error is not None


class _RunQueue:
    """The entries of one run waiting to be written in this process, and whether a thread is
    writing them now (group commit: that thread writes everything queued in one INSERT)."""

    __slots__ = ("cond", "pending", "writing")

    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.pending: list[_Pending] = []
        self.writing = False


_queues: dict[str, _RunQueue] = {}


def _queue(run_id: str) -> _RunQueue:
    queue = _queues.get(run_id)
    if queue is None:
        with _heads_lock:
            queue = _queues.setdefault(run_id, _RunQueue())
            if len(_queues) > _HEADS_MAX:
                # Dropping idle queues is safe: the unique constraint, not the queue, guarantees the chain.
                for key in list(_queues)[: _HEADS_MAX // 2]:
                    idle = _queues[key]
                    if key != run_id and not idle.writing and not idle.pending:
                        _queues.pop(key, None)
    return queue


_ROWS = RowInserter(Invocation, (*HASHED_FIELDS, "prev_hash", "hash"))


def _insert(rows: list[dict]) -> None:
    # A thread's own long-lived connection (DATABASE_POOL_SIZE=0): skip Django's per-request
    # liveness ping (CONN_HEALTH_CHECKS), a whole extra round trip on every invocation. If the
    # connection died since its last use, this INSERT fails instead, and is sent once more on a new
    # one. (Pooled connections are checked by the pool when handed out; nothing to do here.)
    reused = connection.connection is not None and transaction.get_autocommit()
    if reused:
        connection.health_check_done = True
    try:
        _ROWS.insert(rows)
    except (OperationalError, InterfaceError):
        if not reused:
            raise
        connection.close()
        _ROWS.insert(rows)


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
    it, the call fails (503 evidence_unavailable): no result leaves the gateway unrecorded.

    Group commit: concurrent calls of one run in this process queue their entries; one of them
    writes all that are queued in a single multi-row INSERT (one statement, so all or none), the
    others wait for it. Under load this turns N round trips and N commits into one, and a call
    returns only once its own row is committed, exactly as with one INSERT per call.
    """
    queue = _queue(entry.run_id)
    me = _Pending(entry)
    with queue.cond:
        queue.pending.append(me)
        while queue.writing and not me.done:
            queue.cond.wait()
        if not me.done:
            queue.writing = True
    if not me.done:
        _write_queued(queue, me)
    if me.error is not None:
        if isinstance(me.error, DatabaseError):
            raise errors.Unavailable("the evidence store (database) is unavailable", code="evidence_unavailable")
        raise me.error
    return me.row


def _write_queued(queue: _RunQueue, me: _Pending) -> None:
    """Write batches until our own entry is in, then hand the queue to the next waiter."""
    # Inside a caller's transaction only our own entry may be written: entries of other calls must
    # not commit or roll back with a transaction that is not theirs. (in_atomic_block, unlike
    # get_autocommit(), does not open a connection: the database may be down.)
    group = not connection.in_atomic_block
    try:
        while not me.done:
            with queue.cond:
                if group:
                    batch, queue.pending = queue.pending[:MAX_BATCH], queue.pending[MAX_BATCH:]
                else:
                    queue.pending.remove(me)
                    batch = [me]
            _write_batch(batch)
            with queue.cond:
                queue.cond.notify_all()
    finally:
        with queue.cond:
            queue.writing = False
            queue.cond.notify_all()


def _write_batch(batch: list[_Pending]) -> None:
    run_id = batch[0].entry.run_id
    try:
        rows = _append_rows(run_id, [pending.entry for pending in batch])
    except BaseException as exc:  # every waiter must hear how its call ended, whatever happened
        if isinstance(exc, DatabaseError):
            logger.exception("evidence write failed", extra={"run": run_id, "rows": len(batch)})
        for pending in batch:
            pending.error = exc
        return
    for pending, row in zip(batch, rows):
        pending.row = row


def _append_rows(run_id: str, entries: list[EvidenceEntry]) -> list[EvidenceRow]:
    head = _heads.get(run_id)
    sent_last = None
    for _ in range(_MAX_RETRIES):
        if head is None:
            head = _read_head(run_id)
            if sent_last is not None and head[1] == sent_last[-1]["hash"]:
                # Our own INSERT did commit (its answer was lost and the retry collided with it).
                _remember(run_id, head)
                return [EvidenceRow(id=r["id"], seq=r["seq"], hash=r["hash"], latency_us=r["latency_us"]) for r in sent_last]
        seq, prev_hash = head
        now = timezone.now()
        rows = []
        for entry in entries:
            seq += 1
            fields = {**entry.__dict__, "id": uuid.uuid4(), "seq": seq, "created_at": now, "prev_hash": prev_hash}
            fields["hash"] = prev_hash = row_hash(prev_hash=prev_hash, fields=fields)
            rows.append(fields)
        sent_last = rows
        try:
            if transaction.get_autocommit():
                _insert(rows)
            else:
                with transaction.atomic():  # a savepoint: a lost race must not poison the caller's transaction
                    _insert(rows)
        except IntegrityError:
            # Another process extended this run's chain first: re-read the head and go again.
            _forget(run_id)
            head = None
            continue
        _remember(run_id, (seq, prev_hash))
        return [EvidenceRow(id=r["id"], seq=r["seq"], hash=r["hash"], latency_us=r["latency_us"]) for r in rows]
    raise RuntimeError(f"evidence chain for run {run_id!r} stayed contended after {_MAX_RETRIES} attempts")


def evidence_verify(*, run_id: str) -> dict:
    """The full check, every row from #1: {"chain": "valid", "length": n, "head": hash} or
    {"chain": "broken", "at_seq": n, "reason": ..., "length": rows before the break}. Pages and
    the API verify incrementally instead (mcp.services.evidence_chain, which holds the one walk)."""
    from mcp.services.evidence_chain import chain_rows, chain_walk_full  # it builds on this module

    return chain_walk_full(rows=chain_rows(run_id=run_id)).outcome()
