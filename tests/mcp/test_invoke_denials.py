"""Every denial path: the right status and code, a signed deny receipt where policy decided,
evidence of the attempt, and no call reaching the upstream."""

from __future__ import annotations

import pytest

from tests.mcp.helpers import counting, register
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: the web door as deployed, in this process)
from tests.mcp.invoke_helpers import RUN, error_code, evidence, invoke, metric, receipt_of, session_token
from tests.support.opa import FakeOpa

pytestmark = pytest.mark.django_db


@pytest.fixture
def upstream(sdk):
    return sdk.modern_json


def attempt(client, upstream, token, **fields):
    """Invoke while counting what the upstream saw; returns (response, tools/call count)."""
    fields.setdefault("server", "files")
    fields.setdefault("tool", "echo")
    fields.setdefault("arguments", {"text": "x"})
    with counting(upstream) as calls:
        response = invoke(client, token, **fields)
    return response, calls.get("tools/call", 0)


@pytest.mark.parametrize("server_fields, session, code", [
    ({}, dict(scopes=["mcp:tools"]), "scope_missing"),
    ({"scopes": ["files:read"]}, dict(scopes=["mcp:invoke"]), "server_scope_missing"),
    ({"tool_deny": ["ec*"]}, dict(scopes=["mcp:invoke"]), "tool_denied"),
    ({"tool_allow": ["add", "sleep"]}, dict(scopes=["mcp:invoke"]), "tool_not_allowed"),
])
def test_builtin_denials_are_403_with_receipt_and_evidence(client, admin_api, upstream, server_fields, session, code):
    register(admin_api, name="files", url=upstream.url(), **server_fields)
    denied_before = metric("mcp_policy_decisions_total", decision="deny", engine="builtin")
    response, upstream_calls = attempt(client, upstream, session_token(**session))
    assert response.status_code == 403 and error_code(response) == code
    receipt = receipt_of(response)
    assert receipt["decision"] == "deny" and receipt["engine"] == "builtin" and receipt["run"] == RUN
    assert upstream_calls == 0
    [row] = evidence()
    assert (row.status, row.error_code, row.receipt) == ("denied", code, response["x-ig-policy-receipt"])
    assert metric("mcp_policy_decisions_total", decision="deny", engine="builtin") == denied_before + 1


def test_server_outside_the_sessions_list_is_403(client, admin_api, upstream):
    register(admin_api, name="files", url=upstream.url())
    other = register(admin_api, name="other", url=upstream.url())
    response, upstream_calls = attempt(client, upstream, session_token(servers=[other["id"]]))
    assert response.status_code == 403 and error_code(response) == "server_not_allowed"
    assert receipt_of(response)["decision"] == "deny" and upstream_calls == 0
    assert evidence()[0].status == "denied"


def test_session_holding_the_servers_scope_is_allowed(client, admin_api, upstream):
    register(admin_api, name="files", url=upstream.url(), scopes=["files:read"])
    response, upstream_calls = attempt(client, upstream, session_token(scopes=["mcp:invoke", "files:read"]))
    assert response.status_code == 200 and upstream_calls == 1


def test_unknown_server_is_404_with_evidence(client, admin_api, upstream):
    response, upstream_calls = attempt(client, upstream, session_token(), server="nope")
    assert response.status_code == 404 and upstream_calls == 0
    assert evidence()[0].error_code == response.json()["error"]["code"]


def test_disabled_server_is_503(client, admin_api, upstream):
    register(admin_api, name="files", url=upstream.url(), enabled=False)
    response, upstream_calls = attempt(client, upstream, session_token())
    assert response.status_code == 503 and error_code(response) == "server_disabled" and upstream_calls == 0


def test_unknown_tool_is_404_after_one_refresh(client, admin_api, upstream):
    register(admin_api, name="files", url=upstream.url())
    token = session_token()
    assert attempt(client, upstream, token)[0].status_code == 200  # tool list now cached
    with counting(upstream) as calls:
        first = invoke(client, token, server="files", tool="no_such_tool", arguments={})
        second = invoke(client, token, server="files", tool="no_such_tool", arguments={})
    assert first.status_code == second.status_code == 404 and error_code(first) == "tool_not_found"
    assert calls.get("tools/list", 0) >= 1, "a miss refreshes the cached list once"
    assert "tools/call" not in calls


# --- OPA ----------------------------------------------------------------------------------


@pytest.fixture
def opa(settings):
    with FakeOpa() as server:
        settings.OPA_URL = server.url
        settings.OPA_TIMEOUT_MS = 300
        yield server


def test_opa_allow_reaches_the_upstream_and_sees_the_documented_input(client, admin_api, upstream, opa):
    register(admin_api, name="files", url=upstream.url())
    opa.result = {"allow": True, "reason": "approved"}
    response, upstream_calls = attempt(client, upstream, session_token())
    assert response.status_code == 200 and upstream_calls == 1
    receipt = receipt_of(response)
    assert (receipt["engine"], receipt["reason"]) == ("opa", "approved") and receipt["decision_id"]
    sent = opa.requests[-1]["body"]["input"]
    assert sent["run"] == RUN and sent["tool"] == "echo" and sent["server"]["name"] == "files"
    assert sent["session"]["scopes"] == ["mcp:invoke"] and len(sent["arguments_digest"]) == 64
    assert "x" not in str(sent), "OPA gets a digest of the arguments, never the arguments"


def test_opa_deny_is_403_with_its_reason(client, admin_api, upstream, opa):
    register(admin_api, name="files", url=upstream.url())
    opa.result = {"allow": False, "reason": "outside business hours"}
    response, upstream_calls = attempt(client, upstream, session_token())
    assert response.status_code == 403 and error_code(response) == "policy_denied"
    assert "outside business hours" in response.json()["error"]["message"]
    assert receipt_of(response)["decision"] == "deny" and upstream_calls == 0
    assert evidence()[0].status == "denied"


def test_opa_down_denies_with_503(client, admin_api, upstream, opa):
    register(admin_api, name="files", url=upstream.url())
    opa.status = 500
    response, upstream_calls = attempt(client, upstream, session_token())
    assert response.status_code == 503 and error_code(response) == "policy_unavailable"
    assert receipt_of(response)["decision"] == "deny" and upstream_calls == 0
    assert evidence()[0].status == "denied"


def test_builtin_rules_still_apply_before_opa(client, admin_api, upstream, opa):
    register(admin_api, name="files", url=upstream.url(), tool_deny=["echo"])
    response, _ = attempt(client, upstream, session_token())
    assert response.status_code == 403 and error_code(response) == "tool_denied"
    assert opa.requests == [], "OPA is not asked when the builtin rules already deny"
