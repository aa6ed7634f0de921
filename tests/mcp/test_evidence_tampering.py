"""The evidence chain's guarantees, on rows written by a small factory straight into PostgreSQL
(not through the writer): any chain of any Unicode verifies, and any single change of any stored
field, a reordering or a deletion is caught at the right row. Property-based (Hypothesis) where
"any" matters, with a few named cases that read as documentation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp.models import Invocation
from mcp.services.evidence import GENESIS, HASHED_FIELDS, evidence_verify, row_hash

pytestmark = pytest.mark.django_db

LINKS = ("prev_hash", "hash")
# Every stored column but the links is content the hash must cover. Derived from the model, not
# from HASHED_FIELDS, so a field dropped from the hash is a field these tests still tamper with.
CONTENT = tuple(f.attname for f in Invocation._meta.concrete_fields if f.attname not in LINKS)
# Moving a row out of its place (seq, run_id) is a deletion or a reordering, tested as such.
EDITABLE = tuple(name for name in CONTENT if name not in ("seq", "run_id"))
T0 = datetime(2026, 1, 1, tzinfo=UTC)

text = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # what PostgreSQL text can hold
hexdigest = st.text("0123456789abcdef", min_size=64, max_size=64)


def entries(min_size: int = 1, max_size: int = 6):
    entry = st.fixed_dictionaries({
        "session_id": st.text(text, max_size=64), "server_id": st.text(text, max_size=64),
        "server_name": st.text(text, max_size=64), "tool": st.text(text, min_size=1, max_size=128),
        "arguments_digest": hexdigest, "result_digest": st.one_of(st.just(""), hexdigest),
        "status": st.sampled_from(["success", "error", "denied"]), "error_code": st.text(text, max_size=64),
        "is_error": st.booleans(), "latency_us": st.integers(0, 2**62), "receipt": st.text(text, max_size=300),
        "transport": st.sampled_from(["http", "grpc"]),
    })
    return st.lists(entry, min_size=min_size, max_size=max_size)


DEFAULTS = {
    "session_id": "sid-1", "server_id": "srv-1", "server_name": "files", "tool": "echo", "arguments_digest": "a" * 64,
    "result_digest": "", "status": "success", "error_code": "", "is_error": False, "latency_us": 1, "receipt": "", "transport": "http",
}


def write_chain(run_id: str, rows: list[dict]) -> list[Invocation]:
    """The rows as the writer would chain them: seq from 1, each hash over the previous one."""
    prev, made = GENESIS, []
    for seq, entry in enumerate(rows, start=1):
        fields = {**DEFAULTS, **entry, "id": uuid.uuid4(), "run_id": run_id, "seq": seq, "created_at": T0 + timedelta(seconds=seq, microseconds=seq)}
        fields["prev_hash"] = prev
        fields["hash"] = prev = row_hash(prev_hash=prev, fields=fields)
        made.append(Invocation(**fields))
    Invocation.objects.bulk_create(made)
    return made


def new_run() -> str:
    return f"prop-{uuid.uuid4().hex}"


def changed(value, position: int, replacement: str):
    """`value` with one small change: one character replaced, a bit flipped, a microsecond added."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ 1
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, uuid.UUID):
        digits = value.hex
        i = position % 32
        return uuid.UUID(digits[:i] + ("0" if digits[i] != "0" else "1") + digits[i + 1:])
    if value == "":
        return replacement
    i = position % len(value)
    new = replacement if replacement != value[i] else ("a" if value[i] != "a" else "b")
    return value[:i] + new + value[i + 1:]


def tamper(row: Invocation, field: str, value) -> None:
    Invocation.objects.filter(pk=row.pk).update(**{field: value})


# --- every stored field is covered --------------------------------------------------------------


def test_the_hash_covers_every_stored_column_but_the_links():
    # `kind` is hashed after HASHED_FIELDS when it is not "tool" (mcp/services/evidence.py: chains
    # written before kinds existed stay verifiable); the tampering tests below edit it like the rest.
    assert set(HASHED_FIELDS) | {"kind"} == set(CONTENT)


def test_the_hash_covers_the_previous_hash():
    fields = {name: getattr(write_chain(new_run(), [{}])[0], name) for name in HASHED_FIELDS}
    assert row_hash(prev_hash=GENESIS, fields=fields) != row_hash(prev_hash="f" * 64, fields=fields)


@given(rows=entries())
def test_any_chain_of_any_unicode_verifies(db, rows):
    run_id = new_run()
    made = write_chain(run_id, rows)
    assert evidence_verify(run_id=run_id) == {"chain": "valid", "length": len(rows), "head": made[-1].hash}


def test_an_empty_run_verifies_as_empty():
    assert evidence_verify(run_id=new_run()) == {"chain": "valid", "length": 0, "head": None}


@given(rows=entries(), data=st.data())
def test_any_small_change_of_any_field_breaks_the_chain_at_that_row(db, rows, data):
    run_id = new_run()
    made = write_chain(run_id, rows)
    row = data.draw(st.sampled_from(made), label="row")
    field = data.draw(st.sampled_from(EDITABLE), label="field")
    new = changed(getattr(row, field), data.draw(st.integers(0, 10_000)), data.draw(text))
    tamper(row, field, new)
    result = evidence_verify(run_id=run_id)
    assert (result["chain"], result["at_seq"], result["reason"]) == ("broken", row.seq, "row content does not match its hash")


@pytest.mark.parametrize("field", ["receipt", "arguments_digest", "result_digest", "status", "tool"])
def test_editing_a_receipt_or_a_digest_is_caught(field):
    run_id = new_run()
    made = write_chain(run_id, [{"tool": f"t{n}", "result_digest": "b" * 64, "receipt": f"mr1.claims{n}.sig"} for n in range(4)])
    tamper(made[2], field, changed(getattr(made[2], field), 0, "x"))
    assert evidence_verify(run_id=run_id)["at_seq"] == 3


@given(rows=entries(), data=st.data())
def test_any_change_of_a_link_breaks_the_chain_at_that_row(db, rows, data):
    run_id = new_run()
    made = write_chain(run_id, rows)
    row = data.draw(st.sampled_from(made), label="row")
    link = data.draw(st.sampled_from(LINKS), label="link")
    tamper(row, link, changed(getattr(row, link), data.draw(st.integers(0, 63)), data.draw(st.sampled_from("0123456789abcdef"))))
    result = evidence_verify(run_id=run_id)
    expected = "prev_hash does not match the previous row's hash" if link == "prev_hash" else "row content does not match its hash"
    assert (result["chain"], result["at_seq"], result["reason"]) == ("broken", row.seq, expected)


@given(rows=entries(min_size=2), data=st.data())
def test_a_rewritten_row_with_a_fresh_hash_is_caught_at_the_next_row(db, rows, data):
    # The forger recomputes the edited row's hash and repairs the next row's prev_hash: because the
    # next row's hash covers its prev_hash, that row no longer matches.
    run_id = new_run()
    made = write_chain(run_id, rows)
    index = data.draw(st.integers(0, len(made) - 2), label="row")
    row, following = made[index], made[index + 1]
    row.tool = changed(row.tool, 0, "x")
    row.hash = row_hash(prev_hash=row.prev_hash, fields={name: getattr(row, name) for name in HASHED_FIELDS})
    tamper(row, "tool", row.tool)
    tamper(row, "hash", row.hash)
    tamper(following, "prev_hash", row.hash)
    result = evidence_verify(run_id=run_id)
    assert (result["chain"], result["at_seq"], result["reason"]) == ("broken", following.seq, "row content does not match its hash")


@given(rows=entries(min_size=2), data=st.data())
def test_swapping_two_rows_is_caught_at_the_first(db, rows, data):
    run_id = new_run()
    made = write_chain(run_id, rows)
    i, j = sorted(data.draw(st.lists(st.integers(0, len(made) - 1), min_size=2, max_size=2, unique=True), label="rows"))
    tamper(made[i], "seq", 10**12)
    tamper(made[j], "seq", made[i].seq)
    tamper(made[i], "seq", made[j].seq)
    result = evidence_verify(run_id=run_id)
    assert (result["chain"], result["at_seq"]) == ("broken", i + 1)


@given(rows=entries(min_size=2), data=st.data())
def test_deleting_a_row_before_the_head_is_caught_at_its_place(db, rows, data):
    run_id = new_run()
    made = write_chain(run_id, rows)
    index = data.draw(st.integers(0, len(made) - 2), label="row")
    Invocation.objects.filter(pk=made[index].pk).delete()
    result = evidence_verify(run_id=run_id)
    assert (result["chain"], result["at_seq"], result["reason"]) == ("broken", index + 1, f"row {index + 1} is missing (next is {index + 2})")


@given(rows=entries(min_size=2), data=st.data())
def test_moving_a_row_to_another_run_is_a_deletion(db, rows, data):
    run_id = new_run()
    made = write_chain(run_id, rows)
    index = data.draw(st.integers(0, len(made) - 2), label="row")
    tamper(made[index], "run_id", new_run())
    assert evidence_verify(run_id=run_id)["at_seq"] == index + 1


def test_deleting_the_head_shortens_the_chain_and_changes_its_head():
    # A chain alone cannot tell a truncated tail from a shorter history; its length and head can,
    # which is why verification reports both.
    run_id = new_run()
    made = write_chain(run_id, [{}] * 3)
    Invocation.objects.filter(pk=made[-1].pk).delete()
    assert evidence_verify(run_id=run_id) == {"chain": "valid", "length": 2, "head": made[1].hash}
