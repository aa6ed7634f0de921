"""maestro.db.RowInserter: the hand-written INSERT of the hot paths."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection

from maestro.db import RowInserter
from mcp.models import Invocation
from mcp.services.evidence import HASHED_FIELDS

pytestmark = pytest.mark.django_db

FIELDS = (*HASHED_FIELDS, "kind", "prev_hash", "hash")


def rows(count: int, run_id: str) -> list[dict]:
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    return [{
        "id": uuid.uuid4(), "run_id": run_id, "seq": seq, "session_id": "s", "server_id": "", "server_name": "files",
        "tool": f"tool-{seq}", "arguments_digest": "a" * 64, "result_digest": "", "status": "success", "error_code": "",
        "is_error": seq % 2 == 0, "latency_us": 2**40 + seq, "receipt": "mr1.x", "transport": "http", "kind": "tool",
        "created_at": moment, "prev_hash": "0" * 64, "hash": f"{seq:064d}",
    } for seq in range(1, count + 1)]


def test_a_batch_is_one_statement_whose_text_does_not_depend_on_its_size():
    # Given the evidence table's inserter
    inserter = RowInserter(Invocation, FIELDS)
    # When it builds statements for batches of 2 and 40 rows
    small_sql, small_params = inserter.statement(rows(2, "db-a"))
    large_sql, large_params = inserter.statement(rows(40, "db-b"))
    # Then both are the same text with one parameter per column (psycopg caches the conversion of
    # statements up to 50 parameters: a per-row VALUES list was converted again for every batch)
    assert small_sql == large_sql
    assert len(small_params) == len(large_params) == len(FIELDS) <= 50


def test_a_batch_writes_every_row_as_given():
    # Given 40 rows of every column type (uuid, varchar, bigint past 32 bits, boolean, timestamptz)
    given = rows(40, "db-written")
    # When the statement runs
    with connection.cursor() as cursor:
        cursor.execute(*RowInserter(Invocation, FIELDS).statement(given))
    # Then the table holds exactly those rows
    stored = list(Invocation.objects.filter(run_id="db-written").order_by("seq").values(*FIELDS))
    assert stored == given
