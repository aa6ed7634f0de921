"""Incremental chain verification: a checkpoint per run, only newer rows hashed, a time budget,
breaks of every kind found (and recorded), full passes by the periodic task."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from mcp.models import EvidenceChain, Invocation
from mcp.services import evidence_chain as chain
from mcp.services.evidence import evidence_verify, row_hash
from tests.mcp.evidence_rows import chain_rows, write_chain

pytestmark = pytest.mark.django_db
RUN = "run-chain"


def extend(run_id: str, count: int) -> str:
    """Append `count` valid rows to the run's chain."""
    head = Invocation.objects.filter(run_id=run_id).order_by("-seq").first()
    return write_chain(run_id, count, first_seq=head.seq + 1, prev_hash=head.hash)


def tamper(run_id: str, seq: int, sql_set: str = "status = 'denied'") -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE mcp_invocations SET {sql_set} WHERE run_id = %s AND seq = %s", [run_id, seq])


def rehash_from(run_id: str, seq: int) -> None:
    """Rewrite history properly: change row `seq` and recompute every hash from there on, so the
    chain walks cleanly again. Only a stored checkpoint can tell."""
    rows = list(Invocation.objects.filter(run_id=run_id, seq__gte=seq).order_by("seq"))
    prev = Invocation.objects.get(run_id=run_id, seq=seq - 1).hash if seq > 1 else "0" * 64
    rows[0].tool = "rewritten"
    for row in rows:
        row.prev_hash = prev
        row.hash = prev = row_hash(prev_hash=prev, fields=row.__dict__)
        row.save(update_fields=["tool", "prev_hash", "hash"])


@pytest.fixture
def hashed(monkeypatch):
    """Counts the rows hashed, to show what a view does and does not re-verify."""
    calls = []
    real = chain.row_hash

    def counting(**kwargs):
        calls.append(kwargs["fields"]["seq"])
        return real(**kwargs)

    monkeypatch.setattr(chain, "row_hash", counting)
    return calls


def test_a_fresh_run_is_verified_to_its_head_with_its_counts():
    write_chain(RUN, 300)
    status = chain.chain_status(run_id=RUN)
    assert (status.state, status.verified_seq, status.head_seq) == ("valid", 300, 300)
    stored = EvidenceChain.objects.get(run_id=RUN)
    # default_row: an error every 50th call, a denial every 97th, two servers, two tools
    assert (stored.successes, stored.errors, stored.denials) == (291, 6, 3)
    assert sorted(stored.servers) == ["alpha", "beta"] and sorted(stored.tools) == ["add", "echo"]
    assert stored.full_check_at is not None and stored.verified_hash == Invocation.objects.get(run_id=RUN, seq=300).hash


def test_a_later_view_hashes_only_the_rows_added_since(hashed):
    write_chain(RUN, 200)
    chain.chain_status(run_id=RUN)
    hashed.clear()
    extend(RUN, 7)
    status = chain.chain_status(run_id=RUN)
    assert status.state == "valid" and status.verified_seq == 207
    assert sorted(hashed) == list(range(201, 208))
    hashed.clear()
    chain.chain_status(run_id=RUN)
    assert hashed == [], "nothing new, nothing hashed"


def test_a_long_chain_is_verified_a_budget_at_a_time():
    write_chain(RUN, chain.CHUNK * 2 + 100)
    first = chain.chain_status(run_id=RUN, budget_s=0)
    assert (first.state, first.verified_seq) == ("pending", chain.CHUNK), "one chunk at least, then stop"
    assert chain.chain_status(run_id=RUN, budget_s=0).verified_seq == chain.CHUNK * 2
    assert chain.chain_status(run_id=RUN, budget_s=0).state == "valid"


def test_an_edited_row_is_found_before_it_is_verified():
    write_chain(RUN, 50)
    tamper(RUN, 20)
    status = chain.chain_status(run_id=RUN)
    assert (status.state, status.broken_seq, status.verified_seq) == ("broken", 20, 19)
    assert status.reason == "row content does not match its hash"


@pytest.mark.parametrize("damage, seq, reason", [
    ("delete", 12, "row 12 is missing (next is 13)"),
    ("relink", 12, "prev_hash does not match the previous row's hash"),
])
def test_missing_rows_and_broken_links_are_found(damage, seq, reason):
    write_chain(RUN, 30)
    if damage == "delete":
        Invocation.objects.filter(run_id=RUN, seq=seq).delete()
    else:  # a row re-hashed over a forged link: its own content checks out, its link does not
        row = Invocation.objects.get(run_id=RUN, seq=seq)
        row.prev_hash = "f" * 64
        row.hash = row_hash(prev_hash=row.prev_hash, fields=row.__dict__)
        row.save(update_fields=["prev_hash", "hash"])
    status = chain.chain_status(run_id=RUN)
    assert (status.broken_seq, status.reason) == (seq, reason)


def test_rewritten_history_is_caught_by_the_checkpoint():
    # Given a verified chain
    write_chain(RUN, 40)
    assert chain.chain_status(run_id=RUN).state == "valid"
    # When rows 10.. are rewritten and re-hashed (the chain itself walks cleanly again)
    rehash_from(RUN, 10)
    assert evidence_verify(run_id=RUN)["chain"] == "valid"
    # Then the stored checkpoint no longer matches row 40
    status = chain.chain_status(run_id=RUN)
    assert (status.state, status.broken_seq) == ("broken", 40)
    assert status.reason == "row 40 changed or vanished after it was verified"


def test_rows_on_screen_are_hashed_on_every_view_and_a_break_is_recorded():
    write_chain(RUN, 30)
    status = chain.chain_status(run_id=RUN)
    tamper(RUN, 25)
    shown = list(Invocation.objects.filter(run_id=RUN).order_by("-seq")[:10])
    found = chain.chain_check_shown(status=status, rows=shown, consecutive=True)
    assert (found.state, found.broken_seq) == ("broken", 25)
    assert EvidenceChain.objects.get(run_id=RUN).broken_seq == 25, "recorded for every later view"
    assert chain.chain_status(run_id=RUN).state == "broken"


def test_a_gap_between_rows_on_screen_is_found_without_a_filter_only():
    write_chain(RUN, 30)
    status = chain.chain_status(run_id=RUN)
    shown = [row for row in Invocation.objects.filter(run_id=RUN).order_by("-seq")[:10] if row.seq != 25]
    assert chain.chain_check_shown(status=status, rows=shown, consecutive=False).state == "valid"
    found = chain.chain_check_shown(status=status, rows=shown, consecutive=True)
    assert (found.broken_seq, found.reason) == (25, "row 25 is missing (next is 26)")


def test_reverify_starts_again_from_the_first_row():
    write_chain(RUN, 60)
    chain.chain_status(run_id=RUN)
    tamper(RUN, 3)  # an old row, out of any page's view: the checkpoint cannot know
    assert chain.chain_status(run_id=RUN).state == "valid"
    status = chain.chain_reverify(run_id=RUN)
    assert (status.state, status.broken_seq) == ("broken", 3)


def test_the_periodic_full_check_finds_edits_to_old_rows():
    write_chain(RUN, 80)
    chain.chain_status(run_id=RUN)
    tamper(RUN, 5)
    # When the last full check is older than FULL_CHECK_EVERY, the task walks from #1 again
    EvidenceChain.objects.filter(run_id=RUN).update(full_check_at=timezone.now() - chain.FULL_CHECK_EVERY - timedelta(minutes=1))
    assert chain.chains_advance(budget_s=5) == {"advanced": 0, "rechecked": 1}
    stored = EvidenceChain.objects.get(run_id=RUN)
    assert (stored.broken_seq, stored.broken_reason) == (5, "row content does not match its hash")


def test_a_full_check_over_several_rounds_resumes_and_completes(monkeypatch):
    write_chain(RUN, chain.CHUNK * 3)
    chain.chain_status(run_id=RUN, budget_s=5)
    old = timezone.now() - chain.FULL_CHECK_EVERY - timedelta(minutes=1)
    EvidenceChain.objects.filter(run_id=RUN).update(full_check_at=old)
    chain.chains_advance(budget_s=0)  # one chunk per round
    assert EvidenceChain.objects.get(run_id=RUN).recheck_seq == chain.CHUNK
    chain.chains_advance(budget_s=0)
    chain.chains_advance(budget_s=0)
    stored = EvidenceChain.objects.get(run_id=RUN)
    assert stored.recheck_seq is None and stored.full_check_at > old and stored.broken_seq is None


def test_the_task_finds_new_runs_and_verifies_them_to_their_heads():
    write_chain("run-a", 40)
    write_chain("run-b", chain.CHUNK + 10)
    assert chain.chains_advance(budget_s=5)["advanced"] == 2
    verified = dict(EvidenceChain.objects.values_list("run_id", "verified_seq"))
    assert verified == {"run-a": 40, "run-b": chain.CHUNK + 10}


@pytest.mark.django_db(transaction=True)
def test_concurrent_views_never_count_a_row_twice():
    write_chain(RUN, chain.CHUNK * 6)

    def view(_):
        try:
            return chain.chain_status(run_id=RUN, budget_s=0).verified_seq
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(view, range(12)))
    stored = EvidenceChain.objects.get(run_id=RUN)
    assert stored.successes + stored.errors + stored.denials == stored.verified_seq


def test_the_run_index_lists_recent_runs_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    start = timezone.now() - timedelta(hours=1)
    for n in range(30):
        write_chain(f"run-{n:02d}", 3, start=start + timedelta(minutes=n))
    with django_assert_max_num_queries(chain.INDEX_ADVANCE_RUNS * 4 + 8):
        runs = chain.runs_recent()
    assert [run.run_id for run in runs[:3]] == ["run-29", "run-28", "run-27"], "most recently active first"
    assert all(run.calls == 3 for run in runs) and len(runs) == 30
    assert sum(run.status.state == "valid" for run in runs) == chain.INDEX_ADVANCE_RUNS, "the rest is the task's"


def test_an_exported_walk_and_the_full_check_agree():
    rows = list(chain_rows(RUN, 25))
    walked = chain.chain_walk_full(rows=rows, run_id=RUN)
    assert walked.outcome() == {"chain": "valid", "length": 25, "head": rows[-1]["hash"]}
    rows[9]["run_id"] = "another-run"
    assert chain.chain_walk_full(rows=rows, run_id=RUN).outcome()["reason"] == "row 10 belongs to run 'another-run'"


def test_the_beat_task_verifies_new_chains_once_at_a_time():
    from django.conf import settings
    from django.core.cache import cache

    from mcp import tasks

    assert settings.CELERY_BEAT_SCHEDULE["mcp-evidence-verify"]["task"] == tasks.verify_evidence_chains.name
    write_chain(RUN, 30)
    # While a round is running, another is a no-op
    cache.add(tasks.VERIFY_LOCK_KEY, 1, 60)
    assert tasks.verify_evidence_chains() == {}
    cache.delete(tasks.VERIFY_LOCK_KEY)
    # Otherwise it verifies, and remembers when it started for the next round's search
    assert tasks.verify_evidence_chains() == {"advanced": 1, "rechecked": 0}
    assert EvidenceChain.objects.get(run_id=RUN).verified_seq == 30
    assert cache.get(tasks.VERIFY_SINCE_KEY) is not None and cache.get(tasks.VERIFY_LOCK_KEY) is None
