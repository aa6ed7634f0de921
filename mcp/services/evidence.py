"""Tamper-evident evidence: one row per invocation attempt, hash-chained per run.

row.hash = SHA-256(prev_hash + "\n" + canonical JSON of the row's fields, seq included), so
editing, deleting or reordering any row breaks verification from that row on.

This module defines the rows and the chain (and verifies it); `mcp.services.evidence_writer`
writes them.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from mcp.canonical import canonical_json
from mcp.models import Invocation

GENESIS = "0" * 64


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
