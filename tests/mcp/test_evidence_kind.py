"""Evidence rows have a kind (tool, resource, prompt). It is hashed only when it is not "tool", so a
chain written before the column existed still verifies, while a resource or prompt row's kind is
covered by its hash."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.db import connection

from mcp.canonical import canonical_json
from mcp.models import Invocation
from mcp.services.evidence import GENESIS, HASHED_FIELDS, evidence_verify
from mcp.services.evidence_file import evidence_file_verify, evidence_jsonl
from tests.mcp.evidence_rows import write_chain

pytestmark = pytest.mark.django_db

RUN_ID = "run-kinds"


def old_style_hash(prev_hash: str, fields: dict) -> str:
    """The row hash exactly as it was computed before rows had a kind (HASHED_FIELDS only)."""
    values = [fields[name].isoformat() if hasattr(fields[name], "isoformat") else fields[name] for name in HASHED_FIELDS]
    values[0] = str(values[0])
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(values)).hexdigest()


def test_a_chain_hashed_before_kinds_existed_still_verifies():
    # Given rows written the old way: no kind column in the INSERT, hashes over the old fields only
    write_chain(RUN_ID, 3)
    rows = list(Invocation.objects.filter(run_id=RUN_ID).order_by("seq"))
    prev = GENESIS
    for row in rows:
        assert row.kind == "tool"  # the column's database default
        assert row.hash == old_style_hash(prev, row.__dict__)
        prev = row.hash
    # Then the chain verifies, in the database and as an export
    assert evidence_verify(run_id=RUN_ID)["chain"] == "valid"
    assert evidence_file_verify(lines=b"".join(evidence_jsonl(run_id=RUN_ID)).splitlines())[1]["chain"] == "valid"


def test_an_export_made_before_kinds_existed_still_verifies():
    write_chain(RUN_ID, 2)
    lines = [json.loads(line) for line in b"".join(evidence_jsonl(run_id=RUN_ID)).splitlines()]
    for line in lines:
        del line["kind"]
    assert evidence_file_verify(lines=[json.dumps(line).encode() for line in lines])[1]["chain"] == "valid"


def test_editing_the_kind_of_a_resource_row_breaks_the_chain():
    # Given a chain whose second row is a resource read
    write_chain(RUN_ID, 3, with_kind=True, shape=lambda seq: {"kind": "resource", "tool": "memo://readme"} if seq == 2 else {})
    assert evidence_verify(run_id=RUN_ID)["chain"] == "valid"
    # When someone turns it into a tool row
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET kind = 'tool' WHERE run_id = %s AND seq = 2", [RUN_ID])
    # Then verification breaks at that row
    outcome = evidence_verify(run_id=RUN_ID)
    assert (outcome["chain"], outcome["at_seq"]) == ("broken", 2)


def test_editing_a_tool_row_into_a_prompt_row_breaks_the_chain():
    write_chain(RUN_ID, 2)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET kind = 'prompt' WHERE run_id = %s AND seq = 1", [RUN_ID])
    assert evidence_verify(run_id=RUN_ID)["at_seq"] == 1
