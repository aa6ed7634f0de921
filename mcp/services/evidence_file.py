"""A run's evidence as JSON Lines, and verifying such a file offline.

One row per line, in chain order, with exactly the fields the hash covers (`created_at` as the
ISO 8601 text the hash was computed over) plus `prev_hash` and `hash`, so the file alone is enough
to re-check the chain: `manage.py mcp_evidence verify --file run.jsonl`, no database needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from mcp.services.evidence import KIND_TOOL
from mcp.services.evidence_chain import ROW_FIELDS, ChainWalk, chain_rows

MAX_LINE_BYTES = 1024 * 1024
WRITE_BYTES = 256 * 1024
_TYPES = {"seq": int, "latency_us": int, "is_error": bool}  # every other field is a string
_KIND_NAMES = {int: "integer", bool: "boolean", str: "string"}


def evidence_jsonl(*, run_id: str) -> Iterator[bytes]:
    """The run's rows as JSON Lines, read in keyset chunks: any size, about a chunk in memory at a
    time, and handed to the server in pieces of about WRITE_BYTES (a write per line costs more
    than the line)."""
    pending: list[bytes] = []
    size = 0
    for row in chain_rows(run_id=run_id):
        line = json.dumps({name: _plain(row[name]) for name in ROW_FIELDS}, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        pending.append(line)
        size += len(line)
        if size >= WRITE_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _plain(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)  # the UUID


class FileError(ValueError):
    """The file is not an evidence export (as opposed to: a valid export of a broken chain)."""


def evidence_file_verify(*, lines: Iterable[bytes]) -> tuple[str | None, dict]:
    """Walk an exported file from #1: (run id, the outcome `evidence_verify` gives for the
    database). Raises FileError for a line that is not a row."""
    walk: ChainWalk | None = None
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_BYTES:
            raise FileError(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
        if not line.strip():
            continue
        row = _row(line, number)
        if walk is None:
            walk = ChainWalk(run_id=row["run_id"])
        if not walk.feed(row):
            break
    if walk is None:
        return None, ChainWalk().outcome()
    return walk.run_id, walk.outcome()


def _row(line: bytes, number: int) -> dict:
    try:
        row = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise FileError(f"line {number}: not JSON") from None
    if not isinstance(row, dict):
        raise FileError(f"line {number}: not a JSON object")
    # Exports made before rows had a kind carry none: they are all tools.
    row.setdefault("kind", KIND_TOOL)
    missing = [name for name in ROW_FIELDS if name not in row]
    if missing:
        raise FileError(f"line {number}: no {missing[0]!r} field")
    for name in ROW_FIELDS:
        kind = _TYPES.get(name, str)
        if not isinstance(row[name], kind) or (kind is int and isinstance(row[name], bool)):
            raise FileError(f"line {number}: {name!r} must be a JSON {_KIND_NAMES[kind]}")
    return row
