"""A test factory for evidence rows: a valid hash chain written straight to the table (COPY), so
page and API tests get rows of any number without going through the invoke path's writer.
Hashes come from `mcp.services.evidence.row_hash`, the writer's own function."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from django.db import connection

from mcp.services.evidence import GENESIS, HASHED_FIELDS, row_hash

COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")  # as rows were written before they had a kind
KIND_COLUMNS = (*HASHED_FIELDS, "kind", "prev_hash", "hash")


def default_row(seq: int) -> dict:
    """Mostly successes of `echo` on `alpha`, an error every 50th call and a denial every 97th."""
    status = "denied" if seq % 97 == 0 else "error" if seq % 50 == 0 else "success"
    return {
        "server_name": "beta" if seq % 3 == 0 else "alpha",
        "tool": "add" if seq % 5 == 0 else "echo",
        "status": status,
        "error_code": {"success": "", "error": "upstream_timeout", "denied": "tool_denied"}[status],
    }


def chain_rows(run_id: str, count: int, *, start: datetime | None = None, first_seq: int = 1, prev_hash: str = GENESIS,
               shape: Callable[[int], dict] = default_row, receipt: str = "", session_id: str = "s" * 32) -> Iterator[dict]:
    moment = start or datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    for seq in range(first_seq, first_seq + count):
        fields = {
            "id": uuid.uuid4(), "run_id": run_id, "seq": seq, "session_id": session_id, "server_id": "", "server_name": "alpha",
            "tool": "echo", "arguments_digest": "a" * 64, "result_digest": "b" * 64, "status": "success", "error_code": "",
            "is_error": False, "latency_us": 1000 + seq % 900, "receipt": receipt, "transport": "http",
            "created_at": moment + timedelta(milliseconds=seq), **shape(seq),
        }
        fields["prev_hash"] = prev_hash
        fields["hash"] = prev_hash = row_hash(prev_hash=prev_hash, fields=fields)
        yield fields


def write_chain(run_id: str, count: int, *, with_kind: bool = False, **options) -> str:
    """Write `count` chained rows for `run_id` with PostgreSQL COPY; returns the last one's hash.
    Without `with_kind` the kind column is left out, as every row was written before it existed."""
    head = options.get("prev_hash", GENESIS)
    columns = KIND_COLUMNS if with_kind else COLUMNS
    with connection.cursor() as cursor, cursor.copy(f"COPY mcp_invocations ({', '.join(columns)}) FROM STDIN") as copy:
        for row in chain_rows(run_id, count, **options):
            copy.write_row([row.get(name, "tool") if name == "kind" else row[name] for name in columns])
            head = row["hash"]
    return head
