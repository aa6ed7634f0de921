"""What a caller cannot do to the invoke path, or to other callers: requests that cannot be
represented are refused before anything is recorded, results that cannot be represented are
recorded and refused, a tool that may have run is never sent twice, and one bad row never takes
the other rows of its batch down."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from maestro import adb, bridge
from mcp.services import evidence_writer
from mcp.services.evidence import EvidenceEntry, evidence_verify
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: the web door as deployed, in this process)
from tests.mcp.invoke_helpers import RUN, error_code, evidence, invoke, session_token

pytestmark = pytest.mark.django_db


def faulty_calls(faulty, path: str) -> int:
    return httpx.get(faulty.url("/calls"), timeout=5).json().get(path, 0)


@pytest.fixture
def echo(admin_api, sdk):
    return register(admin_api, name="modern", url=sdk.modern_json.url())


# --- requests that have no canonical form: 400 before anything is recorded ---------------------


@pytest.mark.parametrize("raw, code", [
    ('{"server": "modern", "tool": "echo", "arguments": {"text": NaN}}', "invalid_arguments"),
    ('{"server": "modern", "tool": "echo", "arguments": {"text": Infinity}}', "invalid_arguments"),
    ('{"server": "modern", "tool": "echo", "arguments": {"text": 1e400}}', "invalid_arguments"),
    ('{"server": "modern", "tool": "echo", "arguments": {"text": "\\ud800"}}', "invalid_arguments"),
    ('{"server": "modern", "tool": "ec\\u0000ho"}', "invalid_tool"),
    ('{"server": "modern", "tool": "\\udfff"}', "invalid_tool"),
    ('{"server": "mod\\u0000ern", "tool": "echo"}', "invalid_server"),
    ('{"server": "\\ud83d", "tool": "echo"}', "invalid_server"),
    ('{"server": "modern", "tool": "echo", "arguments": ' + "[" * 3000 + "]" * 3000 + "}", "invalid_json"),
])
def test_unrepresentable_requests_are_400_and_leave_no_row(client, echo, raw, code):
    response = invoke(client, session_token(), raw=raw.encode())
    assert response.status_code == 400 and error_code(response) == code
    assert evidence() == []


def test_a_malformed_request_leaves_no_row_but_a_refused_one_does(client, echo):
    # Decided: a request that names no callable tool (its shape is wrong) is refused before any
    # record; one that does (here: arguments the tool's schema refuses) is an attempt, recorded.
    token = session_token()
    assert error_code(invoke(client, token, server="modern", arguments={})) == "invalid_tool"
    assert evidence() == []
    refused = invoke(client, token, server="modern", tool="add", arguments={"a": "two", "b": 1})
    assert refused.status_code == 400 and error_code(refused) == "invalid_arguments"
    [row] = evidence()
    assert (row.status, row.error_code, row.tool) == ("error", "invalid_arguments", "add")


def test_good_calls_beside_bad_ones_on_one_run_all_succeed_and_are_all_recorded(client, echo):
    # Given 60 good calls of one run and, at the same time, requests with NUL and lone surrogates
    token = session_token()
    good = json.dumps({"server": "modern", "tool": "echo", "arguments": {"text": "ok"}}).encode()
    bad = [b'{"server": "modern", "tool": "e\\u0000cho"}', b'{"server": "modern", "tool": "echo", "arguments": {"t": "\\ud800"}}']
    with ThreadPoolExecutor(max_workers=16) as pool:
        goods = [pool.submit(invoke, client, token, raw=good) for _ in range(60)]
        bads = [pool.submit(invoke, client, token, raw=bad[n % 2]) for n in range(10)]
        statuses = [f.result().status_code for f in goods]
        refused = [f.result().status_code for f in bads]
    # Then every good call succeeded and has its row; the bad ones were refused without one
    assert statuses == [200] * 60 and refused == [400] * 10
    assert len(evidence()) == 60 and evidence_verify(run_id=RUN)["chain"] == "valid"


# --- results that have no JSON form: recorded, never passed on half-understood ----------------------


def test_a_result_holding_nan_is_recorded_and_502(client, admin_api, faulty):
    register(admin_api, name="nan", url=faulty.url("/mcp-nan"))
    response = invoke(client, session_token(), server="nan", tool="echo")
    assert response.status_code == 502 and error_code(response) == "upstream_invalid_result"
    [row] = evidence()
    assert (row.status, row.error_code) == ("error", "upstream_invalid_result")


# --- a tool that may have run is never sent again ------------------------------------------------


def test_an_upstream_that_drops_the_connection_after_reading_the_call_ran_it_once(client, admin_api, faulty):
    register(admin_api, name="dropper", url=faulty.url("/mcp-drop"))
    token = session_token()
    before = faulty_calls(faulty, "/mcp-drop")
    response = invoke(client, token, server="dropper", tool="echo")
    assert response.status_code == 502 and error_code(response) == "upstream_unreachable"
    assert faulty_calls(faulty, "/mcp-drop") - before == 1, "a tools/call that reached the upstream was sent again"
    assert [(r.status, r.error_code) for r in evidence()] == [("error", "upstream_unreachable")]


def test_garbage_after_the_tool_ran_is_502_recorded_once(client, admin_api, faulty):
    register(admin_api, name="garbage", url=faulty.url("/mcp-garbage"))
    before = faulty_calls(faulty, "/mcp-garbage")
    response = invoke(client, session_token(), server="garbage", tool="echo")
    assert response.status_code == 502 and error_code(response) == "upstream_not_mcp"
    assert faulty_calls(faulty, "/mcp-garbage") - before == 1
    assert [(r.status, r.error_code) for r in evidence()] == [("error", "upstream_not_mcp")]


# --- the evidence writer: one bad row fails only its own call ---------------------------------------


def entry(n: int, **fields) -> EvidenceEntry:
    base = dict(run_id="run-iso", session_id="s", server_id="", server_name="srv", tool="echo", arguments_digest=str(n),
                result_digest="", status="success", error_code="", is_error=False, latency_us=n, receipt="", transport="http")
    return EvidenceEntry(**{**base, **fields})


@pytest.mark.django_db(transaction=True)
def test_a_row_the_database_refuses_fails_alone_and_the_chain_closes_over_it():
    async def scenario():
        entries = [entry(n) for n in range(5)] + [entry(5, tool="nul\x00tool")] + [entry(n) for n in range(6, 10)]
        return await asyncio.gather(*(evidence_writer.evidence_append(entry=e) for e in entries), return_exceptions=True)

    outcomes = bridge.run(scenario())
    failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert failed == [5] and outcomes[5].code == "evidence_unavailable"
    assert evidence_verify(run_id="run-iso") == {"chain": "valid", "length": 9, "head": max((o for o in outcomes if not isinstance(o, Exception)), key=lambda r: r.seq).hash}


@pytest.mark.django_db(transaction=True)
def test_a_conflict_that_is_not_a_race_is_not_retried_without_end(monkeypatch):
    # Given a database that refuses every row with a unique violation that no re-read can cure
    attempts = []

    async def always_conflict(*args, **kwargs):
        attempts.append(1)
        raise adb.Conflict("duplicate key value violates unique constraint")

    async def scenario():
        database = adb.database()
        monkeypatch.setattr(database, "locked", always_conflict)
        monkeypatch.setattr(database, "execute", always_conflict)
        return await asyncio.gather(evidence_writer.evidence_append(entry=entry(1, run_id="run-stuck")), return_exceptions=True)

    [outcome] = bridge.run(scenario())
    # Then the call fails with 503 evidence_unavailable after a bounded number of attempts
    assert outcome.code == "evidence_unavailable"
    assert len(attempts) <= 2 * evidence_writer.LOCKED_RACES + 1


# --- logs: a bad request is one access-log line, never a traceback ---------------------------------


def test_bad_requests_are_one_log_line_each(client, echo, caplog):
    token = session_token()
    with caplog.at_level(logging.INFO):
        for raw in [b"{", b'{"server": "modern", "tool": "echo", "arguments": {"x": NaN}}', b'{"server": 1}'] * 10:
            assert invoke(client, token, raw=raw).status_code == 400
    records = [r for r in caplog.records if r.name.startswith(("maestro", "mcp", "sessions_app"))]
    assert len(records) == 30 and {r.name for r in records} == {"maestro.access"}
    assert not any(r.exc_info for r in caplog.records)
