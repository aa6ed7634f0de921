"""Every refusal of the MCP endpoint, each with its status and shape: credentials, Origin, sessions,
protocol versions, headers against the body, JSON-RPC rules, invalid params, denials, upstreams
down. In this process, through the web door's application (the `gateway` fixture)."""

from __future__ import annotations

import json

import pytest

from mcp.models import Invocation
from sessions_app.services import session_revoke
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import RUN, client, open_session, session_token  # noqa: F401
from tests.mcp.mcpserver.helpers import MODERN, LegacySession, answer_of, mcp_path, modern_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def notes(admin_api, sdk):
    return register(admin_api, name="notes", url=sdk.modern_json.url())


@pytest.fixture
def token(notes):
    return session_token()


def error_of(response) -> dict:
    return response.json()["error"]


# --- credentials, Origin, scopes: the project's error shape ------------------------------------


def test_no_token_is_401_with_a_bearer_challenge(client, notes):
    response = modern_request(client, None, "tools/list")
    assert response.status_code == 401
    assert response["www-authenticate"].startswith("Bearer")
    assert error_of(response)["code"] == "missing_token"


def test_a_revoked_session_is_refused(client, notes):
    record, token = open_session()
    session_revoke(run_id=RUN, sid=record.sid)
    response = modern_request(client, token, "tools/list")
    assert response.status_code == 401 and error_of(response)["code"] == "session_revoked"


def test_a_token_of_another_run_is_refused(client, notes):
    response = modern_request(client, session_token(run_id="another-run"), "tools/list")
    assert response.status_code == 403 and error_of(response)["code"] == "run_mismatch"


def test_a_browser_origin_outside_cors_origin_is_403(client, token, settings):
    response = modern_request(client, token, "tools/list", headers={"origin": "https://evil.example"})
    assert response.status_code == 403 and error_of(response)["code"] == "origin_not_allowed"


def test_an_allowed_origin_is_served_with_cors(token):
    from django.test import override_settings

    from tests.support.gateway import GatewayClient, fresh_application

    with override_settings(CORS_ALLOWED_ORIGINS=["https://studio.example"]):
        response = modern_request(GatewayClient(app=fresh_application()), token, "server/discover", headers={"origin": "https://studio.example"})
    assert response.status_code == 200 and response["access-control-allow-origin"] == "https://studio.example"


def test_a_session_that_may_neither_invoke_nor_list_is_403(client, admin_api, sdk):
    register(admin_api, name="reports", url=sdk.modern_json.url(), scopes=["reports:read"])
    response = modern_request(client, session_token(scopes=("reports:read",)), "tools/list")
    assert response.status_code == 403 and error_of(response)["code"] == "scope_missing"


def test_a_session_without_invoke_may_list_but_not_call(client, notes):
    token = session_token(scopes=("mcp:tools",))
    assert answer_of(modern_request(client, token, "tools/list"))["result"]["tools"]
    answer = answer_of(modern_request(client, token, "tools/call", {"name": "notes__echo", "arguments": {"text": "x"}}))
    assert answer["result"]["isError"] is True
    assert answer["result"]["_meta"]["io.maestro/error"]["code"] == "scope_missing"
    assert answer["result"]["_meta"]["io.maestro/receipt"].startswith("mr1.")


def test_a_body_over_the_limit_is_413(client, token, settings):
    settings.MCP_MAX_REQUEST_BYTES = 2048
    response = modern_request(client, token, "tools/call", {"name": "notes__echo", "arguments": {"text": "x" * 4000}})
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"


def test_a_body_that_is_not_json_content_is_refused(client, token):
    response = client.post(mcp_path(), content=b"{}", headers={"authorization": f"Bearer {token}", "content-type": "text/plain"})
    assert response.status_code == 400 and error_of(response)["code"] == "unsupported_media_type"


def test_other_http_methods_are_405(client, token):
    response = client.request("PUT", mcp_path(), headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 405 and response["allow"] == "GET, POST, DELETE"


# --- session revisions: Mcp-Session-Id ---------------------------------------------------------


def test_a_request_without_a_session_id_is_400(client, token):
    session = LegacySession(client, token)
    response = session.request("tools/list")
    assert response.status_code == 400 and error_of(response)["code"] == "mcp_session_missing"


def test_an_unknown_session_id_is_404(client, token):
    session = LegacySession(client, token).initialize()
    session.session_id = "x" * 43
    response = session.request("tools/list")
    assert response.status_code == 404 and error_of(response)["code"] == "mcp_session_unknown"


def test_a_session_id_is_useless_with_another_token(client, token):
    # Given a session opened with one token, when another token of the same run presents its id
    session = LegacySession(client, token).initialize()
    thief = LegacySession(client, session_token(), session_id=session.session_id)
    # Then it is unknown to that token (404, as the spec says), and still works for its own
    assert thief.request("tools/list").status_code == 404
    assert session.request("tools/list").status_code == 200


def test_delete_ends_the_session(client, token):
    session = LegacySession(client, token).initialize()
    assert client.delete(mcp_path(), headers=session.headers()).status_code == 204
    assert session.request("ping").status_code == 404


def test_an_unsupported_session_revision_is_negotiated_down(client, token):
    session = LegacySession(client, token, version="2024-11-05").initialize()
    assert session.initialized["protocolVersion"] == "2025-11-25"


def test_batches_are_2025_03_26_only(client, token):
    old = LegacySession(client, token, version="2025-03-26").initialize()
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": "two", "method": "tools/list"}]
    answers = old.post(batch).json()
    assert [a["id"] for a in answers] == [1, "two"] and "tools" in answers[1]["result"]
    new = LegacySession(client, token).initialize()
    response = new.post(batch)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32600


# --- 2026-07-28: versions, headers against the body --------------------------------------------


def test_an_unknown_protocol_version_is_32022_listing_the_supported_ones(client, token):
    response = modern_request(client, token, "tools/list", headers={"mcp-protocol-version": "2099-01-01"},
                              meta={"io.modelcontextprotocol/protocolVersion": "2099-01-01"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022 and error["data"]["supported"] == [MODERN, "2025-11-25", "2025-06-18", "2025-03-26"]


@pytest.mark.parametrize(("headers", "what"), [
    ({"mcp-method": "tools/list"}, "Mcp-Method"),
    ({"mcp-name": "notes__add"}, "Mcp-Name"),
    ({"mcp-name": None}, "Mcp-Name"),
    ({"mcp-protocol-version": "2025-11-25-x"}, "MCP-Protocol-Version"),
])
def test_headers_that_disagree_with_the_body_are_header_mismatch(client, token, headers, what):
    response = modern_request(client, token, "tools/call", {"name": "notes__echo", "arguments": {"text": "x"}}, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32020 and what in error["message"]
    assert not Invocation.objects.exists()  # refused before anything ran


def test_a_base64_mcp_name_is_decoded_before_comparing(client, token):
    import base64

    encoded = "=?base64?" + base64.b64encode(b"notes__echo").decode() + "?="
    response = modern_request(client, token, "tools/call", {"name": "notes__echo", "arguments": {"text": "ok"}}, headers={"mcp-name": encoded})
    assert answer_of(response)["result"]["content"][0]["text"] == "ok"


def test_a_request_without_the_envelope_is_invalid_params(client, token):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
    response = client.post(mcp_path(), content=json.dumps(body), headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32602


def test_get_and_delete_are_405_in_2026_07_28(client, token):
    headers = {"authorization": f"Bearer {token}", "mcp-protocol-version": MODERN}
    assert client.get(mcp_path(), headers=headers).status_code == 405
    assert client.delete(mcp_path(), headers=headers).status_code == 405


# --- JSON-RPC rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "code"), [
    (b"{not json", -32700),
    (b"[" * 5000 + b"]" * 5000, -32700),  # deeper than any parser should follow
    (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', -32600),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', -32600),
    (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600),
])
def test_messages_that_are_not_json_rpc_are_refused_without_an_id(client, token, raw, code):
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "mcp-protocol-version": MODERN, "mcp-method": "ping"}
    response = client.post(mcp_path(), content=raw, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": response.json()["error"]["message"]}}


def test_an_unknown_method_is_32601_and_404(client, token):
    response = modern_request(client, token, "logging/setLevel", {"level": "info"})
    assert response.status_code == 404 and response.json()["error"]["code"] == -32601


def test_a_notification_is_accepted_with_202(client, token):
    body = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "mcp-protocol-version": MODERN}
    assert client.post(mcp_path(), content=json.dumps(body), headers=headers).status_code == 202


# --- calls: invalid params, unknown names, denials, upstreams down ------------------------------


def test_arguments_against_the_schema_are_invalid_params_naming_the_path(client, token):
    response = modern_request(client, token, "tools/call", {"name": "notes__add", "arguments": {"a": 1, "b": "two"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602 and error["message"].startswith("arguments.b:")
    assert error["data"] == {"path": "arguments.b", "code": "invalid_arguments"}
    [row] = Invocation.objects.all()
    assert (row.status, row.error_code) == ("error", "invalid_arguments")


def test_an_unknown_tool_is_invalid_params(client, token):
    answer = answer_of(modern_request(client, token, "tools/call", {"name": "notes__nope", "arguments": {}}))
    assert answer["error"]["code"] == -32602 and answer["error"]["data"]["code"] == "tool_not_found"


def test_a_denied_tool_is_an_error_result_with_code_and_receipt(client, admin_api, notes):
    admin_api.patch(f"/api/maestro/v1/mcp/servers/{notes['id']}", {"tool_deny": ["add"]}, format="json")
    token = session_token(servers=[notes["id"]])  # one server: the upstream's own names
    answer = answer_of(modern_request(client, token, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}))
    assert answer["result"]["isError"] is True
    assert "denied" in answer["result"]["content"][0]["text"]
    assert answer["result"]["_meta"]["io.maestro/error"] == {"code": "tool_denied"}
    [row] = Invocation.objects.all()
    assert row.status == "denied" and row.receipt == answer["result"]["_meta"]["io.maestro/receipt"]


def test_an_upstream_that_is_down_is_an_error_result(client, admin_api):
    from tests.support.services import free_port

    register(admin_api, name="gone", url=f"http://127.0.0.1:{free_port()}/mcp")
    token = session_token()
    session = LegacySession(client, token).initialize()
    answer = answer_of(session.request("resources/list"))  # a list skips a server it cannot reach
    assert answer["result"]["resources"] == []
    answer = answer_of(modern_request(client, token, "tools/call", {"name": "gone__echo", "arguments": {}}))
    # Its tools cannot even be listed: the name is unknown
    assert answer["error"]["code"] == -32602


def test_a_call_the_upstream_fails_is_an_error_result(client, admin_api, sdk):
    server = register(admin_api, name="slow", url=sdk.modern_json.url(), timeout_ms=300)
    token = session_token(servers=[server["id"]])
    answer = answer_of(modern_request(client, token, "tools/call", {"name": "sleep", "arguments": {"seconds": 2}}))
    assert answer["result"]["isError"] is True and answer["result"]["_meta"]["io.maestro/error"]["code"] == "upstream_timeout"


def test_an_upstream_json_rpc_error_is_passed_on(client, token):
    answer = answer_of(modern_request(client, token, "tools/call", {"name": "notes__boom", "arguments": {}}))
    assert answer["error"]["code"] == -32050 and answer["error"]["data"]["code"] == "upstream_jsonrpc_error"


def test_a_resource_of_a_server_outside_the_session_is_denied(client, admin_api, sdk, notes):
    other = register(admin_api, name="other", url=sdk.legacy_json.url())
    token = session_token(servers=[notes["id"], other["id"]])
    limited = session_token(servers=[notes["id"]])
    assert answer_of(modern_request(client, token, "resources/read", {"uri": "maestro://other/memo://readme"}))["result"]["contents"]
    answer = answer_of(modern_request(client, limited, "resources/read", {"uri": "maestro://other/memo://readme"}))
    # A one-server session is transparent: the gateway's URI is no URI of its upstream
    assert answer["error"]["code"] == -32602
    two = session_token(servers=[notes["id"], register(admin_api, name="third", url=sdk.legacy_sse.url())["id"]])
    answer = answer_of(modern_request(client, two, "resources/read", {"uri": "maestro://other/memo://readme"}))
    assert answer["error"]["data"]["code"] == "server_not_allowed" and answer["error"]["data"]["receipt"].startswith("mr1.")
    assert Invocation.objects.filter(kind="resource", status="denied").count() == 1
