"""POST /runs/{run}/mcp/invoke end to end against real upstream MCP servers."""

from __future__ import annotations

from tests.sessions_app.helpers import authenticate, create  # noqa: F401

import pytest

from mcp.services.evidence import evidence_verify
from sessions_app.services import session_revoke
from tests.mcp.helpers import counting, register, text_of
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: the web door as deployed, in this process)
from tests.mcp.invoke_helpers import RUN, error_code, evidence, invoke, metric, receipt_of, session_token, tools

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo_server(admin_api, sdk):
    return register(admin_api, name="modern", url=sdk.modern_json.url())


@pytest.fixture
def token(echo_server):
    return session_token()


# --- the happy path, on every protocol family --------------------------------------------------


@pytest.mark.parametrize("family", ["modern_json", "modern_sse", "legacy_sse", "legacy_json", "legacy_stateless"])
def test_echo_through_every_protocol_family(client, admin_api, sdk, family):
    upstream = getattr(sdk, family)
    register(admin_api, name=family.replace("_", "-"), url=upstream.url())
    token = session_token()
    with counting(upstream) as calls:
        response = invoke(client, token, server=family.replace("_", "-"), tool="echo", arguments={"text": "hi there"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert text_of(body["result"]) == "hi there" and not body["result"].get("isError")
    assert body["evidence"]["seq"] == 1 and len(body["evidence"]["hash"]) == 64
    assert calls.get("tools/call") == 1
    assert receipt_of(response)["decision"] == "allow"


def test_success_is_recorded_as_evidence_with_a_receipt(client, token, echo_server):
    success_before = metric("mcp_invocations_total", status="success", server="modern")
    response = invoke(client, token, server="modern", tool="add", arguments={"a": 2, "b": 40})
    assert response.status_code == 200
    [row] = evidence()
    assert (row.status, row.server_name, row.tool, row.seq) == ("success", "modern", "add", 1)
    assert row.receipt == response["x-ig-policy-receipt"] and row.result_digest and row.arguments_digest
    assert str(row.id) == response.json()["invocation_id"] and row.hash == response.json()["evidence"]["hash"]
    assert metric("mcp_invocations_total", status="success", server="modern") == success_before + 1
    assert evidence_verify(run_id=RUN)["chain"] == "valid"


def test_server_can_be_named_by_id(client, token, echo_server):
    response = invoke(client, token, server=echo_server["id"], tool="echo", arguments={"text": "by id"})
    assert response.status_code == 200 and response.json()["server"] == "modern"


def test_tool_error_result_is_a_200_result(client, token, echo_server):
    response = invoke(client, token, server="modern", tool="fail")
    assert response.status_code == 200
    assert response.json()["result"]["isError"] is True
    assert evidence()[0].is_error and evidence()[0].status == "success"


def test_chain_grows_per_run(client, token, echo_server):
    for n in range(3):
        assert invoke(client, token, server="modern", tool="echo", arguments={"text": str(n)}).status_code == 200
    rows = evidence()
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash


# --- server-everything, which nobody here wrote ------------------------------------------------


@pytest.fixture
def everything_server(admin_api, everything):
    return register(admin_api, name="everything", url=everything.url())


def test_everything_echo_sum_structured_and_error(client, everything_server):
    token = session_token()
    echo = invoke(client, token, server="everything", tool="echo", arguments={"message": "from maestro"})
    assert echo.status_code == 200, echo.content
    assert "from maestro" in text_of(echo.json()["result"])

    total = invoke(client, token, server="everything", tool="get-sum", arguments={"a": 19, "b": 23})
    assert total.status_code == 200 and "42" in text_of(total.json()["result"])

    structured = invoke(client, token, server="everything", tool="get-structured-content", arguments={"location": "New York"})
    assert structured.status_code == 200 and structured.json()["result"]["structuredContent"]

    # Arguments the tool's own inputSchema rejects never reach the upstream.
    wrong = invoke(client, token, server="everything", tool="get-sum", arguments={"a": "nineteen", "b": 23})
    assert wrong.status_code == 400 and "arguments.a" in wrong.json()["error"]["message"]

    assert [r.status for r in evidence()] == ["success", "success", "success", "error"]


# --- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize("raw, code", [
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'{"server": 5, "tool": "echo"}', "invalid_server"),
    (b'{"server": "modern", "tool": ""}', "invalid_tool"),
    (b'{"server": "modern", "tool": "echo", "arguments": [1]}', "invalid_arguments"),
    (b'{"server": "modern", "tool": "echo", "arguments": {}, "timeout_ms": "soon"}', "invalid_timeout"),
    (b'{"server": "modern", "tool": "echo", "extra": 1}', "invalid_request"),
])
def test_malformed_requests_are_400(client, token, echo_server, sdk, raw, code):
    with counting(sdk.modern_json) as calls:
        response = invoke(client, token, raw=raw)
    assert response.status_code == 400 and error_code(response) == code
    assert "tools/call" not in calls


def test_huge_body_is_413(client, token, echo_server, settings):
    response = invoke(client, token, server="modern", tool="echo", arguments={"text": "x" * (settings.MCP_MAX_REQUEST_BYTES + 10)})
    assert response.status_code == 413 and error_code(response) == "payload_too_large"


def test_arguments_failing_the_input_schema_name_the_path(client, token, echo_server, sdk):
    with counting(sdk.modern_json) as calls:
        response = invoke(client, token, server="modern", tool="add", arguments={"a": 1, "b": "two"})
    assert response.status_code == 400 and error_code(response) == "invalid_arguments"
    assert response.json()["error"]["message"].startswith("arguments.b:")
    assert "tools/call" not in calls


def test_missing_required_argument_is_400(client, token, echo_server):
    response = invoke(client, token, server="modern", tool="echo", arguments={})
    assert response.status_code == 400 and "'text' is a required property" in response.json()["error"]["message"]


def test_timeout_above_the_servers_is_400(client, token, echo_server):
    response = invoke(client, token, server="modern", tool="echo", arguments={"text": "x"}, timeout_ms=10_000_000)
    assert response.status_code == 400 and error_code(response) == "invalid_timeout"


# --- tokens ---------------------------------------------------------------------------------


def test_no_token_is_401(client, echo_server):
    response = invoke(client, None, server="modern", tool="echo", arguments={"text": "x"})
    assert response.status_code == 401 and error_code(response) == "missing_token"
    assert evidence() == [], "no evidence before authentication"


def test_tampered_token_is_401(client, token, echo_server):
    head, payload, signature = token.split(".")
    # A different signature in canonical base64url (a reversed one would mostly be malformed_token)
    forged = ("A" if signature[0] != "A" else "B") + signature[1:]
    response = invoke(client, f"{head}.{payload}.{forged}", server="modern", tool="echo", arguments={"text": "x"})
    assert response.status_code == 401 and error_code(response) == "invalid_signature"


def test_revoked_token_is_401(client, echo_server):
    record, token = create(run_id=RUN, scopes=["mcp:invoke"], created_by="test")
    session_revoke(run_id=RUN, sid=record.sid)
    response = invoke(client, token, server="modern", tool="echo", arguments={"text": "x"})
    assert response.status_code == 401 and error_code(response) == "session_revoked"


def test_expired_token_is_401(client, echo_server, settings):
    settings.SESSION_TOKEN_LEEWAY_SECONDS = 0
    token = session_token(ttl_seconds=1)
    import time

    time.sleep(2.1)
    response = invoke(client, token, server="modern", tool="echo", arguments={"text": "x"})
    assert response.status_code == 401 and error_code(response) == "token_expired"


def test_token_of_another_run_is_403(client, token, echo_server):
    response = invoke(client, token, run_id="someone-elses-run", server="modern", tool="echo", arguments={"text": "x"})
    assert response.status_code == 403 and error_code(response) == "run_mismatch"


# --- the run-facing tools list ------------------------------------------------------------


def test_tools_lists_what_the_session_may_call(client, admin_api, sdk):
    register(admin_api, name="open", url=sdk.modern_json.url(), tool_deny=["extra_*", "boom"])
    register(admin_api, name="guarded", url=sdk.legacy_stateless.url(), scopes=["files:read"])
    token = session_token()
    response = tools(client, token)
    assert response.status_code == 200
    listed = {(t["server"], t["name"]) for t in response.json()["tools"]}
    assert ("open", "echo") in listed and ("open", "boom") not in listed
    assert not any(name.startswith("extra_") for _, name in listed)
    assert not any(server == "guarded" for server, _ in listed), "the session lacks files:read"
    echo = next(t for t in response.json()["tools"] if t["name"] == "echo")
    assert echo["inputSchema"]["required"] == ["text"] and echo["description"]


def test_tools_needs_a_token(client):
    assert client.get(f"/api/maestro/v1/runs/{RUN}/mcp/tools").status_code == 401
