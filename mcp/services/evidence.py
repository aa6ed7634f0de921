"""Tamper-evident evidence: one row per invocation attempt, hash-chained per run.

row.hash = SHA-256(prev_hash + "\n" + canonical JSON of the row's fields, seq included), so
editing, deleting or reordering any row breaks verification from that row on.

`kind` (tool | resource | prompt) came later, with the MCP endpoint. A row's kind is hashed only
when it is not "tool", appended after the other values: every row written before the column
existed is a tool and was hashed without it, so its stored hash still verifies, while a resource
or prompt row's kind is covered (editing it, or turning a resource row into a tool row, changes
the hash). The two shapes cannot be confused: the hashed list is one value longer.

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
    kind: str = "tool"  # tool | resource | prompt


KIND_TOOL = "tool"
HASHED_FIELDS = (
    "id", "run_id", "seq", "session_id", "server_id", "server_name", "tool", "arguments_digest", "result_digest",
    "status", "error_code", "is_error", "latency_us", "receipt", "transport", "created_at",
)


def row_hash(*, prev_hash: str, fields: dict) -> str:
    values = [fields[name].isoformat() if isinstance(fields[name], datetime) else fields[name] for name in HASHED_FIELDS]
    values[0] = str(values[0])
    kind = fields.get("kind") or KIND_TOOL
    if kind != KIND_TOOL:
        values.append(kind)  # see the module docstring: old rows stay verifiable
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(values)).hexdigest()


def evidence_verify(*, run_id: str) -> dict:
    """The full check, every row from #1: {"chain": "valid", "length": n, "head": hash} or
    {"chain": "broken", "at_seq": n, "reason": ..., "length": rows before the break}. Pages and
    the API verify incrementally instead (mcp.services.evidence_chain, which holds the one walk)."""
    from mcp.services.evidence_chain import chain_rows, chain_walk_full  # it builds on this module

    return chain_walk_full(rows=chain_rows(run_id=run_id)).outcome()
