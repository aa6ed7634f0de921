"""Incremental verification of evidence chains, for pages and the evidence API.

`evidence_verify` (mcp.services.evidence) re-hashes a whole run: right for the `mcp_evidence
verify` command, far too slow for a page at a million rows. Here each run has a checkpoint
(`EvidenceChain`: "rows 1..N verified, row N's hash is H", or "broken at #K"); a request re-checks
that row N still carries H, hashes only the rows added since, within a time budget, and moves the
checkpoint on. The rows a page shows are hashed too, on every view, so tampering with any row on
screen shows at once; tampering with an older row out of view is found by a re-verification from
#1 (the Studio's button, the periodic task's full passes, or the command). Verification that
runs out of budget says how far it got ("pending"); the periodic task (`chains_advance`) finishes it.

Every walk over rows, full or incremental, from the database or from an exported file, goes
through one `ChainWalk`, so the rule is written once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from mcp.models import EvidenceChain, Invocation
from mcp.services.evidence import GENESIS, HASHED_FIELDS, row_hash

ROW_FIELDS = (*HASHED_FIELDS, "kind", "prev_hash", "hash")
CHUNK = 250
MAX_NAMES = {"servers": 100, "tools": 300}
PAGE_BUDGET_S = 0.03  # hashing one request may do (a chunk at least; 500 to 1,000 rows here) before it answers "pending"
STATUS_COUNTER = {"success": "successes", "error": "errors", "denied": "denials"}


# --- the one walk ----------------------------------------------------------------------------


@dataclass
class ChainWalk:
    """Feed rows in seq order, starting after a known-good row (`seq`, `hash`; 0 and GENESIS for a
    whole chain). The first break stops the walk; `seq`/`hash` are then the last good row."""

    seq: int = 0
    hash: str = GENESIS
    run_id: str | None = None
    walked: int = 0
    broken_seq: int | None = None
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    servers: dict[str, None] = field(default_factory=dict)  # ordered sets
    tools: dict[str, None] = field(default_factory=dict)
    first_at: datetime | None = None
    last_at: datetime | None = None

    def feed(self, row: dict) -> bool:
        if self.broken_seq is not None:
            return False
        expected = self.seq + 1
        if self.run_id is not None and row["run_id"] != self.run_id:
            return self._break(row["seq"], f"row {row['seq']} belongs to run {str(row['run_id'])[:128]!r}")
        if row["seq"] != expected:
            return self._break(expected, f"row {expected} is missing (next is {row['seq']})")
        if row["prev_hash"] != self.hash:
            return self._break(row["seq"], "prev_hash does not match the previous row's hash")
        if row_hash(prev_hash=self.hash, fields=row) != row["hash"]:
            return self._break(row["seq"], "row content does not match its hash")
        self.seq, self.hash, self.walked = row["seq"], row["hash"], self.walked + 1
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        self.servers.setdefault(row["server_name"], None)
        self.tools.setdefault(row["tool"], None)
        if self.first_at is None:
            self.first_at = row["created_at"]
        self.last_at = row["created_at"]
        return True

    def _break(self, seq: int, reason: str) -> bool:
        self.broken_seq, self.reason = seq, reason
        return False

    def outcome(self) -> dict:
        """The shape `mcp_evidence verify` and `evidence_verify` have always answered."""
        if self.broken_seq is not None:
            return {"chain": "broken", "at_seq": self.broken_seq, "reason": self.reason, "length": self.walked}
        return {"chain": "valid", "length": self.walked, "head": self.hash if self.walked else None}


def chain_rows(*, run_id: str, after_seq: int = 0, chunk: int = CHUNK) -> Iterator[dict]:
    """A run's rows in seq order from `after_seq + 1`, as dicts of ROW_FIELDS, read in keyset
    chunks (no long-lived cursor: any run size, any connection pool)."""
    while True:
        rows = _rows_after(run_id, after_seq, chunk)
        yield from rows
        if len(rows) < chunk:
            return
        after_seq = rows[-1]["seq"]


def _rows_after(run_id: str, after_seq: int, limit: int) -> list[dict]:
    query = Invocation.objects.filter(run_id=run_id, seq__gt=after_seq).order_by("seq").values_list(*ROW_FIELDS)[:limit]
    return [dict(zip(ROW_FIELDS, values)) for values in query]


def chain_walk_full(*, rows: Iterable[dict], run_id: str | None = None) -> ChainWalk:
    walk = ChainWalk(run_id=run_id)
    for row in rows:
        if not walk.feed(row):
            break
    return walk


# --- checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainStatus:
    """What a page or the API says about a run's chain."""

    run_id: str
    state: str  # valid (through the head; an empty chain too) | pending (verified part of the way) | broken
    verified_seq: int
    head_seq: int
    broken_seq: int | None = None
    reason: str = ""
    verified_at: datetime | None = None
    full_check_at: datetime | None = None
    servers: tuple[str, ...] = ()  # names seen in the verified rows (bounded), for filters
    tools: tuple[str, ...] = ()

    def as_json(self) -> dict:
        body = {
            "chain": self.state, "verified_through": self.verified_seq, "length": self.head_seq,
            "verified_at": _iso(self.verified_at), "full_check_at": _iso(self.full_check_at),
        }
        if self.broken_seq is not None:
            body.update(at_seq=self.broken_seq, reason=self.reason)
        return body


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _head(run_id: str) -> tuple[int, datetime | None, str]:
    head = Invocation.objects.filter(run_id=run_id).order_by("-seq").values_list("seq", "created_at", "hash").first()
    return head if head else (0, None, "")


def _status(chain: EvidenceChain | None, run_id: str, head_seq: int) -> ChainStatus:
    if chain is None:
        return ChainStatus(run_id=run_id, state="valid" if head_seq == 0 else "pending", verified_seq=0, head_seq=head_seq)
    if chain.broken_seq is not None:
        state = "broken"
    else:
        state = "valid" if chain.verified_seq >= head_seq else "pending"
    return ChainStatus(
        run_id=run_id, state=state, verified_seq=chain.verified_seq, head_seq=head_seq, broken_seq=chain.broken_seq,
        reason=chain.broken_reason, verified_at=chain.verified_at, full_check_at=chain.full_check_at,
        servers=tuple(chain.servers), tools=tuple(chain.tools),
    )


def chain_status(*, run_id: str, budget_s: float | None = None) -> ChainStatus:
    """Bring the run's checkpoint forward (at most `budget_s` of hashing, at least one chunk) and
    say where the chain stands. A run without rows gets no checkpoint row."""
    head_seq, head_at, head_hash = _head(run_id)
    chain = EvidenceChain.objects.filter(run_id=run_id).first()
    if head_seq == 0 and chain is None:
        return _status(None, run_id, 0)
    if chain is None:
        chain, _ = EvidenceChain.objects.get_or_create(run_id=run_id, defaults={"last_call_at": head_at})
    if chain.broken_seq is None and chain.verified_seq and chain.verified_seq >= head_seq and (chain.verified_seq, chain.verified_hash) != (head_seq, head_hash):
        # Nothing new to walk, but the newest verified row must still be there as it was.
        chain = _mark_broken(chain, chain.verified_seq, f"row {chain.verified_seq} changed or vanished after it was verified")
    budget_s = PAGE_BUDGET_S if budget_s is None else budget_s
    chain = _advance(chain, head_seq=head_seq, head_at=head_at, deadline=time.monotonic() + budget_s)
    return _status(chain, run_id, head_seq)


def _record_break(run_id: str, seq: int, reason: str) -> None:
    """The earliest break found wins."""
    EvidenceChain.objects.filter(Q(broken_seq__isnull=True) | Q(broken_seq__gt=seq), run_id=run_id).update(
        broken_seq=seq, broken_reason=reason[:200],
    )


def _mark_broken(chain: EvidenceChain, seq: int, reason: str) -> EvidenceChain:
    _record_break(chain.run_id, seq, reason)
    return EvidenceChain.objects.filter(run_id=chain.run_id).first() or chain


def chain_reverify(*, run_id: str, budget_s: float | None = None) -> ChainStatus:
    """Forget the checkpoint (a broken verdict included) and verify again from #1; what the
    budget leaves is done by the next views and the periodic task."""
    EvidenceChain.objects.filter(run_id=run_id).delete()
    return chain_status(run_id=run_id, budget_s=budget_s)


def _walk_to(run_id: str, walk: ChainWalk, *, until_seq: int, deadline: float) -> None:
    """Feed the rows after `walk.seq` up to `until_seq`, a chunk at a time, until the deadline
    (one chunk at least, so every call makes progress)."""
    while walk.broken_seq is None and walk.seq < until_seq:
        rows = _rows_after(run_id, walk.seq, min(CHUNK, until_seq - walk.seq))
        if not rows:
            walk._break(walk.seq + 1, f"row {walk.seq + 1} is missing")
            return
        for row in rows:
            if not walk.feed(row):
                return
        if time.monotonic() >= deadline:
            return


def _advance(chain: EvidenceChain, *, head_seq: int, head_at: datetime | None, deadline: float) -> EvidenceChain:
    if chain.broken_seq is not None or chain.verified_seq >= head_seq:
        if head_at and (chain.last_call_at is None or head_at > chain.last_call_at):
            EvidenceChain.objects.filter(run_id=chain.run_id).update(last_call_at=head_at)
            chain.last_call_at = head_at
        return chain
    started = timezone.now()
    walk = ChainWalk(seq=chain.verified_seq, hash=chain.verified_hash if chain.verified_seq else GENESIS)
    if chain.verified_seq:
        # The checkpoint row must still carry the hash it was verified with: rewriting history
        # (re-hashing rows from some point on) changes it.
        now_hash = Invocation.objects.filter(run_id=chain.run_id, seq=chain.verified_seq).values_list("hash", flat=True).first()
        if now_hash != chain.verified_hash:
            walk._break(chain.verified_seq, f"row {chain.verified_seq} changed or vanished after it was verified")
    _walk_to(chain.run_id, walk, until_seq=head_seq, deadline=deadline)
    fields = {
        "verified_seq": walk.seq, "verified_hash": walk.hash if walk.seq else "", "verified_at": started,
        "servers": _merged(chain.servers, walk.servers, MAX_NAMES["servers"]),
        "tools": _merged(chain.tools, walk.tools, MAX_NAMES["tools"]),
        "last_call_at": max(filter(None, (chain.last_call_at, walk.last_at, head_at)), default=None),
    }
    if not chain.verified_seq and chain.full_check_at is None:
        fields["full_check_at"] = started  # this walk starts at #1: it is a full check
    for status, counter in STATUS_COUNTER.items():
        fields[counter] = getattr(chain, counter) + walk.counts.get(status, 0)
    if walk.broken_seq is not None:
        fields.update(broken_seq=walk.broken_seq, broken_reason=walk.reason[:200])
    # Compare-and-set: if another request moved the checkpoint meanwhile, theirs is as good.
    if not EvidenceChain.objects.filter(run_id=chain.run_id, verified_seq=chain.verified_seq, broken_seq__isnull=True).update(**fields):
        return EvidenceChain.objects.filter(run_id=chain.run_id).first() or chain
    for name, value in fields.items():
        setattr(chain, name, value)
    return chain


def _merged(existing: list, seen: dict[str, None], limit: int) -> list:
    names = dict.fromkeys(existing)
    for name in seen:
        if len(names) >= limit:
            break
        names.setdefault(name, None)
    return list(names)


def _recheck(chain: EvidenceChain, *, deadline: float) -> None:
    """Walk from #1 over rows already verified, continuing where the last round stopped; at the
    end the walk must arrive at the checkpoint's own hash. Finds edits to old rows."""
    if chain.recheck_seq is None:
        chain.recheck_seq, chain.recheck_hash, chain.recheck_started_at = 0, "", timezone.now()
    walk = ChainWalk(seq=chain.recheck_seq, hash=chain.recheck_hash if chain.recheck_seq else GENESIS)
    _walk_to(chain.run_id, walk, until_seq=chain.verified_seq, deadline=deadline)
    if walk.broken_seq is None and walk.seq >= chain.verified_seq and walk.hash != chain.verified_hash:
        walk._break(chain.verified_seq, f"row {chain.verified_seq} changed after it was verified")
    if walk.broken_seq is not None:
        fields = {"recheck_seq": None, "recheck_hash": "", "broken_seq": walk.broken_seq, "broken_reason": walk.reason[:200]}
    elif walk.seq >= chain.verified_seq:
        fields = {"recheck_seq": None, "recheck_hash": "", "full_check_at": chain.recheck_started_at}
    else:
        fields = {"recheck_seq": walk.seq, "recheck_hash": walk.hash, "recheck_started_at": chain.recheck_started_at}
    EvidenceChain.objects.filter(run_id=chain.run_id, verified_seq=chain.verified_seq, broken_seq__isnull=True).update(**fields)


def chain_check_shown(*, status: ChainStatus, rows: list, consecutive: bool) -> ChainStatus:
    """Hash the rows a page shows (model instances or dicts, in any order) and, when they are
    consecutive rows of the chain (no filter), check their links and gaps too. A break found
    here is recorded on the checkpoint (the earliest one wins)."""
    def get(row, name):
        return row[name] if isinstance(row, dict) else getattr(row, name)

    found: tuple[int, str] | None = None
    ordered = sorted(rows, key=lambda row: get(row, "seq"))
    for row in ordered:
        if row_hash(prev_hash=get(row, "prev_hash"), fields={name: get(row, name) for name in (*HASHED_FIELDS, "kind")}) != get(row, "hash"):
            found = (get(row, "seq"), "row content does not match its hash")
            break
    if consecutive:
        for older, newer in zip(ordered, ordered[1:]):
            older_seq, newer_seq = get(older, "seq"), get(newer, "seq")
            if newer_seq != older_seq + 1:
                candidate = (older_seq + 1, f"row {older_seq + 1} is missing (next is {newer_seq})")
            elif get(newer, "prev_hash") != get(older, "hash"):
                candidate = (newer_seq, "prev_hash does not match the previous row's hash")
            else:
                continue
            if found is None or candidate[0] < found[0]:
                found = candidate
            break
    if found is None or (status.broken_seq is not None and status.broken_seq <= found[0]):
        return status
    seq, reason = found
    _record_break(status.run_id, seq, reason)
    return replace(status, state="broken", broken_seq=seq, reason=reason)


@dataclass(frozen=True)
class EvidenceListing:
    rows: list  # Invocation rows in chain order
    status: ChainStatus
    previous_after: int | None  # `after_seq` of the page before this one (None: this is the first)


def evidence_listing(*, run_id: str, after_seq: int = 0, offset: int = 0, limit: int) -> EvidenceListing:
    """A page of the evidence API: rows in chain order after seq `after_seq` (by index, as fast at
    #900,000 as at #1) then `offset` rows on, and the chain's status: the checkpoint brought
    forward within the page budget, and the page's own rows hashed and linked."""
    from mcp import selectors  # selectors read the models this module writes

    status = chain_status(run_id=run_id)
    rows = selectors.evidence_in_order(run_id=run_id, after_seq=after_seq, offset=offset, limit=limit)
    status = chain_check_shown(status=status, rows=rows, consecutive=True)
    previous_after = None
    if rows and rows[0].seq > 1:
        previous_after = selectors.evidence_seq_before(run_id=run_id, seq=rows[0].seq, back=limit)
    return EvidenceListing(rows=rows, status=status, previous_after=previous_after)


# --- the run index and the periodic task ------------------------------------------------------

DISCOVERY_ROWS = 500  # newest rows the run index looks at, per status, to find active runs
TASK_DISCOVERY_ROWS = 100_000
INDEX_ADVANCE_RUNS = 5  # chains the run index brings forward itself (the periodic task does the rest)
INDEX_BUDGET_S = 0.1
FULL_CHECK_EVERY = timedelta(hours=24)


def runs_discover(*, rows_per_status: int = DISCOVERY_ROWS, since: datetime | None = None) -> int:
    """Give every run seen among the newest evidence rows a checkpoint row (so the run index lists
    it) and move `last_call_at` on for those already there. One query per status, each an index
    scan over (status, created_at): bounded work whatever the table's size. Returns runs seen."""
    newest: dict[str, datetime] = {}
    for status in STATUS_COUNTER:
        query = Invocation.objects.filter(status=status)
        if since is not None:
            query = query.filter(created_at__gte=since)
        for run_id, created_at in query.order_by("-created_at").values_list("run_id", "created_at")[:rows_per_status]:
            if run_id not in newest or created_at > newest[run_id]:
                newest[run_id] = created_at
    if not newest:
        return 0
    EvidenceChain.objects.bulk_create([EvidenceChain(run_id=run, last_call_at=at) for run, at in newest.items()], ignore_conflicts=True)
    stale = [
        EvidenceChain(run_id=run, last_call_at=newest[run])
        for run, last_call_at in EvidenceChain.objects.filter(run_id__in=list(newest)).values_list("run_id", "last_call_at")
        if last_call_at is None or newest[run] > last_call_at
    ]
    EvidenceChain.objects.bulk_update(stale, ["last_call_at"], batch_size=500)
    return len(newest)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    calls: int  # the head's seq: the chain's length
    status: ChainStatus
    successes: int
    errors: int
    denials: int
    last_call_at: datetime | None


def runs_recent(*, limit: int = 50) -> list[RunSummary]:
    """The most recently active runs, for the run index: a bounded look for new runs, one query
    for the list (each run's head by index), and at most INDEX_ADVANCE_RUNS chains brought
    forward within INDEX_BUDGET_S. Counts by status cover the verified rows."""
    runs_discover()
    chains = list(EvidenceChain.objects.annotate(head_seq=Coalesce(Subquery(_head_seq_of_chain()), 0)).order_by("-last_call_at")[:limit])
    deadline = time.monotonic() + INDEX_BUDGET_S
    behind = [c for c in chains if c.broken_seq is None and c.verified_seq < c.head_seq][:INDEX_ADVANCE_RUNS]
    for chain in behind:
        if time.monotonic() < deadline:
            _advance(chain, head_seq=chain.head_seq, head_at=None, deadline=deadline)
    return [
        RunSummary(
            run_id=c.run_id, calls=c.head_seq, status=_status(c, c.run_id, c.head_seq), successes=c.successes,
            errors=c.errors, denials=c.denials, last_call_at=c.last_call_at,
        )
        for c in chains
    ]


def chains_advance(*, budget_s: float, since: datetime | None = None) -> dict[str, int]:
    """The periodic task's work: find runs with calls since `since`, then, most recently active
    first and until `budget_s` is spent, verify each unfinished chain up to its head, and walk
    each chain whose last full check is older than FULL_CHECK_EVERY from #1 again (over several
    rounds for long chains). The next round goes on where this one stopped."""
    deadline = time.monotonic() + budget_s
    runs_discover(rows_per_status=TASK_DISCOVERY_ROWS, since=since)
    due = timezone.now() - FULL_CHECK_EVERY
    todo = (
        EvidenceChain.objects.filter(broken_seq__isnull=True)
        .annotate(head_seq=Coalesce(Subquery(_head_seq_of_chain()), 0))
        .filter(Q(verified_seq__lt=F("head_seq")) | Q(recheck_seq__isnull=False) | Q(verified_seq__gt=0, full_check_at__lt=due))
        .order_by("-last_call_at")
    )
    advanced = rechecked = 0
    for chain in todo.iterator(chunk_size=200):
        if chain.verified_seq < chain.head_seq:
            _advance(chain, head_seq=chain.head_seq, head_at=None, deadline=deadline)
            advanced += 1
        else:
            _recheck(chain, deadline=deadline)
            rechecked += 1
        if time.monotonic() >= deadline:
            break  # after one chain at least: every round makes progress
    return {"advanced": advanced, "rechecked": rechecked}


def _head_seq_of_chain():
    return Invocation.objects.filter(run_id=OuterRef("run_id")).order_by("-seq").values("seq")[:1]
