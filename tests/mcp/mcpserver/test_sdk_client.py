"""The official MCP SDK client (Python) against the gateway's endpoint on a real web door, in both
protocol families: connect, list, call, read a resource, get a prompt; hear list_changed.

list_changed through the SDK is checked at 2026-07-28 (subscriptions/listen). In the session
family the SDK 2.3 client's background GET-stream reader intermittently stops reading: the
gateway's notifications then sit unread in the client's socket (its receive queue, /proc/net/tcp),
so that check would be flaky for a reason on the client's side; the session family's GET stream is
tested with a plain HTTP client in test_streams.py instead."""

from __future__ import annotations

import pytest

from mcp.models import Invocation
from mcp.services.evidence import evidence_verify
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import session_token
from tests.mcp.mcpserver.conftest import mcp_url, sdk_client

pytestmark = pytest.mark.django_db(transaction=True)


# "auto": server/discover, then 2026-07-28 (the SDK falls back to initialize only for a legacy server)
@pytest.mark.parametrize(("mode", "protocol"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
def test_the_sdk_client_uses_the_gateway_like_any_mcp_server(web_door, admin_api, sdk, mode, protocol):
    # Given two upstreams of both families behind the gateway, and a session for both
    notes = register(admin_api, name="notes", url=sdk.modern_sse.url())  # 2026-07-28 and 2025, sessions, SSE
    old = register(admin_api, name="old", url=sdk.legacy_json.url())  # 2025-06-18 only, sessions, JSON
    run_id = f"sdk-{mode}"
    token = session_token(run_id=run_id, servers=[notes["id"], old["id"]])

    # When the SDK client connects through the gateway and uses each kind of primitive
    client = sdk_client(
        url=mcp_url(web_door, run_id), token=token, mode=mode, tool="old__echo",
        resource="maestro://notes/memo://readme", prompt="old__greet",
    )
    seen = client.line()

    # Then it saw the gateway, namespaced names from both servers, and real answers
    assert seen["server"] == "maestro-mcp"
    assert seen["protocol"] == protocol
    assert {"notes__echo", "old__echo", "notes__add", "old__extra_02"} <= set(seen["tools"])
    assert len(seen["tools"]) == 24  # 12 tools on each server, every page followed
    assert seen["call"]["content"][0]["text"] == "through the gateway"
    assert seen["call"]["_meta"]["io.maestro/evidence"]["seq"] >= 1 and seen["call"]["_meta"]["io.maestro/receipt"].startswith("mr1.")
    assert "maestro://notes/memo://readme" in seen["resources"] and "maestro://old/memo://notes/today" in seen["resources"]
    assert "maestro://notes/memo://notes/{day}" in seen["templates"]
    assert seen["read"]["contents"][0] == {"uri": "maestro://notes/memo://readme", "mimeType": "text/plain", "text": "Read me first."}
    assert sorted(seen["prompts"]) == ["notes__greet", "old__greet"]
    assert seen["prompt"]["messages"][0]["content"]["text"] == "Hello, gateway!"

    # And every call, read and get is evidence of its kind, in one valid chain
    rows = list(Invocation.objects.filter(run_id=run_id).order_by("seq").values_list("kind", "server_name", "tool", "status", "transport"))
    assert rows == [
        ("tool", "old", "echo", "success", "mcp"),
        ("resource", "notes", "memo://readme", "success", "mcp"),
        ("prompt", "old", "greet", "success", "mcp"),
    ]
    assert evidence_verify(run_id=run_id)["chain"] == "valid"

    if protocol != "2026-07-28":
        assert client.finish() == 0
        return
    # When an operator changes what the session may call while the client listens
    assert client.line() == "READY"
    response = admin_api.patch(f"/api/maestro/v1/mcp/servers/{old['id']}", {"tool_deny": ["echo"]}, format="json")
    assert response.status_code == 200, response.content

    # Then the client hears list_changed (on whichever worker holds its stream) and relists
    after = client.line()
    assert after["changed"] is True
    assert "old__echo" not in after["tools"] and "notes__echo" in after["tools"]
    assert client.finish() == 0
