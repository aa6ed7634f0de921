"""Writing evidence rows: one writer per process (per event loop), group commit across all runs.

Every call awaits `evidence_append(entry)`, which queues its entry and returns once that row is
committed (no answer leaves the gateway before its row exists). The writer takes everything queued
and sends it as ONE multi-row INSERT (one statement: all or nothing), whatever runs the rows
belong to; while that INSERT is under way, new entries queue for the next one. Under load this
turns N round trips and N commits into one; idle, it costs one INSERT per call, as before.

Chains: each run's chain head (last seq, hash) is remembered in-process; rows get the next seqs
and are hashed onto it, and the INSERT is the only round trip. Across processes the unique
(run_id, seq) constraint is the arbiter:

- a batch that loses a race (another process extended one of its runs first) is written again
  under per-run advisory locks: lock, read the heads, insert, commit (two round trips, pipelined),
  and so are that run's batches for the next CONTENDED_SECONDS, so two processes writing one run
  queue on its lock instead of failing every other INSERT; a run this process has not written yet
  starts that way too (its head must be read anyway);
- a batch the database refuses for any other reason (a value it cannot store) is written again
  row by row, so one bad row fails only its own call, never the others in its batch;
- when the database fails mid-write, the INSERT may have committed with its answer lost: those
  calls get 503, and the runs' heads are read again (under the lock) before their next row, so
  the chain continues from whatever was committed, never forks.

The INSERT is written by hand (maestro.db.RowInserter, not Model.save): on the hot path the ORM's
model construction and SQL compilation cost more CPU than the round trip itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from django.utils import timezone

from maestro import adb, errors, metrics
from maestro.bridge import per_loop
from maestro.db import RowInserter
from mcp.models import Invocation
from mcp.services.evidence import GENESIS, HASHED_FIELDS, EvidenceEntry, EvidenceRow, row_hash

logger = logging.getLogger("mcp.evidence")
MAX_BATCH = 200  # rows per INSERT: 19 parameters each, well inside PostgreSQL's and SQLite's limits
HEADS_MAX = 20_000
# After a lost race, a run's rows are written under its lock for this long: while two processes
# write one run, locking queues them where optimism would waste an INSERT in every other batch.
CONTENDED_SECONDS = 10.0
LOCKED_RACES = 20  # conflicts under the lock (with a writer not locking yet) before going row by row

_ROWS = RowInserter(Invocation, (*HASHED_FIELDS, "kind", "prev_hash", "hash"))
_TABLE = Invocation._meta.db_table


class EvidenceUnavailable(errors.Unavailable):
    code = "evidence_unavailable"


def _unavailable() -> EvidenceUnavailable:
    return EvidenceUnavailable("the evidence store (database) is unavailable")


@dataclass
class _Pending:
    entry: EvidenceEntry
    future: asyncio.Future


class EvidenceWriter:
    def __init__(self) -> None:
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.heads: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._contended: dict[str, float] = {}  # run -> until when its rows are written locked
        self._busy = False
        self.batches = 0  # INSERT statements sent (tests and metrics read it)
        self.last_batch_size = 0

    async def append(self, entry: EvidenceEntry) -> EvidenceRow:
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(entry, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="maestro-evidence-writer")
        self._wake.set()
        # Shielded: a caller that goes away (a client disconnect) does not take its row with it.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._busy = True
                try:
                    await self._write(batch)
                except BaseException as exc:  # every waiter must hear how its call ended, whatever happened
                    if isinstance(exc, adb.DatabaseFailure):
                        logger.warning("evidence write failed: %s", exc)
                    else:
                        logger.exception("evidence writer failed")
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(_unavailable())
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                finally:
                    self._busy = False

    async def drain(self) -> None:
        """Wait until every row queued so far is written (or has failed): shutdown, tests."""
        while self._queue or (self._task is not None and not self._task.done() and self._busy):
            await asyncio.sleep(0.001)

    def forget(self) -> None:
        """Forget remembered chain heads (tests roll the database back behind this cache's back)."""
        self.heads.clear()
        self._contended.clear()

    # --- one batch ---------------------------------------------------------------------------

    async def _write(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        database = adb.database()
        pending = [p for p in batch if not p.future.done()]
        runs = list(dict.fromkeys(p.entry.run_id for p in pending))
        now = time.monotonic()
        if any(run not in self.heads or self._contended.get(run, 0.0) > now for run in runs):
            written = await self._write_locked(database, pending, runs)
        else:
            written = await self._write_optimistic(database, pending, runs)
        if written:
            self.batches += 1
            self.last_batch_size = written
        metrics.record_evidence_write(seconds=time.perf_counter() - started, rows=max(written, len(pending)), ok=written == len(pending))

    async def _write_optimistic(self, database, pending: list[_Pending], runs: list[str]) -> int:
        """One round trip: the rows chained onto the heads this process remembers."""
        rows, sent = self._chain(pending)
        if not rows:
            return 0
        try:
            await database.execute(*_ROWS.statement(rows))
        except adb.Conflict:
            # Another process extended one of these chains: from now on (for a while) write
            # them under the lock, which queues instead of failing.
            until = time.monotonic() + CONTENDED_SECONDS
            self._contended.update({run: until for run in runs})
            return await self._write_locked(database, pending, runs)
        except adb.Refused:
            logger.warning("evidence batch refused by the database; writing its rows one by one", extra={"rows": len(rows)})
            return await self._one_by_one(database, pending)
        except adb.Unavailable:
            self._fail(pending, runs)
            return 0
        self._commit(sent)
        return len(rows)

    async def _write_locked(self, database, pending: list[_Pending], runs: list[str]) -> int:
        """Two round trips, no race: lock the runs' chains, read their heads, insert, commit."""
        sent: list[tuple[_Pending, dict]] = []

        def build(heads: list[tuple]) -> tuple[str, list]:
            known = {run: (seq, digest) for run, seq, digest in heads}
            for run in runs:
                self._remember(run, known.get(run, (0, GENESIS)))
            rows, chained = self._chain(pending)
            sent[:] = chained
            return _ROWS.statement(rows) if rows else ("SELECT 1", [])

        sql, params = _heads_query(runs)
        for _ in range(LOCKED_RACES):
            try:
                await database.locked(runs, sql, params, build)
            except adb.Conflict:
                # A writer in another process that has not lost a race yet still writes these
                # runs without the lock; its next INSERT will lose one and lock too. Again.
                continue
            except adb.Refused:
                logger.warning("evidence batch refused by the database; writing its rows one by one", extra={"rows": len(sent)})
                return await self._one_by_one(database, pending)
            except adb.Unavailable:
                self._fail(pending, runs)
                return 0
            self._commit(sent)
            return len(sent)
        # Still conflicting with the heads read under the lock: not a race but a row a constraint
        # refuses. Row by row, so only that row's call fails.
        return await self._one_by_one(database, pending)

    async def _one_by_one(self, database, pending: list[_Pending]) -> int:
        """Each row in a transaction of its own, so a row the database refuses fails its own call
        and no other (the rows after it chain onto the last one that was written)."""
        written = 0
        for p in pending:
            if p.future.done():
                continue
            sent: list[tuple[_Pending, dict]] = []
            run = p.entry.run_id

            def build(heads: list[tuple], p=p, run=run, sent=sent) -> tuple[str, list]:
                self._remember(run, heads[0][1:] if heads else (0, GENESIS))
                rows, chained = self._chain([p])
                sent[:] = chained
                return _ROWS.statement(rows) if rows else ("SELECT 1", [])

            sql, params = _heads_query([run])
            for _ in range(LOCKED_RACES):
                try:
                    await database.locked([run], sql, params, build)
                except adb.Conflict:
                    continue
                except adb.Refused:
                    break
                except adb.Unavailable:
                    self._fail([q for q in pending if not q.future.done()], [q.entry.run_id for q in pending])
                    return written
                self._commit(sent)
                written += len(sent)
                break
            if not p.future.done():
                logger.error("evidence row refused by the database", extra={"run": run[:128].encode("unicode_escape").decode()})
                p.future.set_exception(_unavailable())
        return written

    def _chain(self, pending: list[_Pending]) -> tuple[list[dict], list[tuple[_Pending, dict]]]:
        """Rows for the pending entries, chained onto the remembered heads; an entry that cannot
        even be hashed (text the canonical form refuses) fails alone and is left out."""
        now = timezone.now()
        heads: dict[str, tuple[int, str]] = {}
        rows, sent = [], []
        for p in pending:
            if p.future.done():
                continue
            run = p.entry.run_id
            seq, prev_hash = heads.get(run) or self.heads.get(run) or (0, GENESIS)
            fields = {**p.entry.__dict__, "id": uuid.uuid4(), "seq": seq + 1, "created_at": now, "prev_hash": prev_hash}
            try:
                fields["hash"] = row_hash(prev_hash=prev_hash, fields=fields)
            except (ValueError, TypeError):
                logger.error("evidence row cannot be hashed", extra={"run": run[:128].encode("unicode_escape").decode()})
                p.future.set_exception(_unavailable())
                continue
            heads[run] = (seq + 1, fields["hash"])
            rows.append(fields)
            sent.append((p, fields))
        return rows, sent

    def _commit(self, sent: list[tuple[_Pending, dict]]) -> None:
        for p, row in sent:
            self._remember(row["run_id"], (row["seq"], row["hash"]))
            if not p.future.done():
                p.future.set_result(EvidenceRow(id=row["id"], seq=row["seq"], hash=row["hash"], latency_us=row["latency_us"]))

    def _fail(self, pending: list[_Pending], runs: list[str]) -> None:
        """The database is unavailable. The INSERT may still have committed with its answer lost,
        so these heads are read again (under the lock) before the next write of these runs."""
        for run in runs:
            self.heads.pop(run, None)
        for p in pending:
            if not p.future.done():
                p.future.set_exception(_unavailable())

    def _remember(self, run: str, head: tuple[int, str]) -> None:
        self.heads[run] = tuple(head)  # type: ignore[assignment]
        self.heads.move_to_end(run)
        while len(self.heads) > HEADS_MAX:
            self.heads.popitem(last=False)
        if len(self._contended) > HEADS_MAX:
            now = time.monotonic()
            self._contended = {r: until for r, until in self._contended.items() if until > now}


def _heads_query(runs: list[str]) -> tuple[str, list[str]]:
    """The last (run, seq, hash) of each run that has rows: one backward step of the (run_id, seq)
    index per run, however long the run. (A correlated `seq = (SELECT MAX(seq) ...)` filter reads
    every row of the run instead: 14 ms at 530 rows, and every locked batch paid it.) The same
    text runs on PostgreSQL and on SQLite."""
    one = f"SELECT * FROM (SELECT run_id, seq, hash FROM {_TABLE} WHERE run_id = %s ORDER BY seq DESC LIMIT 1) AS head_{{}}"
    return " UNION ALL ".join(one.format(i) for i in range(len(runs))), list(runs)


writer = per_loop(EvidenceWriter)


async def evidence_append(*, entry: EvidenceEntry) -> EvidenceRow:
    """Commit one evidence row and return it (with seq and hash); EvidenceUnavailable (503) when
    the database cannot take it: no result leaves the gateway unrecorded."""
    return await writer().append(entry)


def local_cache_clear() -> None:
    for instance in list(writer.instances.values()):  # type: ignore[attr-defined]
        instance.forget()
