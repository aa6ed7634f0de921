"""Long-lived streams on a real web door (two workers): an upstream whose tool list changes is
announced on the GET stream of a session revision and on a 2026-07-28 subscriptions/listen stream."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import session_token
from tests.mcp.mcpserver.conftest import mcp_url
from tests.mcp.mcpserver.helpers import ACCEPT_BOTH, META_CAPABILITIES, META_VERSION, MODERN
from tests.support.services import wait_until
from tests.upstreams import launch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def growable():
    """An SDK upstream with a `grow` tool that adds a tool to its own list (JSON answers: it cannot
    say so on the call's stream)."""
    server = launch.start_sdk("growable", "--mode", "stateless", "--response", "json", "--growable")
    launch.wait_ready(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def telling():
    """The same, answering as event streams: `grow` says notifications/tools/list_changed on them."""
    server = launch.start_sdk("telling", "--mode", "stateless", "--response", "sse", "--growable")
    launch.wait_ready(server)
    yield server
    server.stop()


def events(response):
    """JSON-RPC messages of an open event stream, as they arrive (comments skipped)."""
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield json.loads("\n".join(data))
            data = []


def grow_and_refresh(http: httpx.Client, url: str, token: str, admin_api, server_id: str) -> None:
    """The upstream adds a tool; the operator's refresh finds the new list (which announces it)."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": ACCEPT_BOTH,
               "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "grow"}
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "grow", "arguments": {},
            "_meta": {META_VERSION: MODERN, META_CAPABILITIES: {}}}}
    assert http.post(url, json=body, headers=headers).json()["result"]["content"][0]["text"].startswith("grown_")
    assert admin_api.get(f"/api/maestro/v1/mcp/servers/{server_id}/tools", {"refresh": "true"}).status_code == 200


def test_a_changed_upstream_tool_list_reaches_the_get_stream(web_door, admin_api, growable):
    server = register(admin_api, name="growing", url=growable.url())
    token = session_token(run_id="run-streams", servers=[server["id"]])
    url = mcp_url(web_door, "run-streams")
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": ACCEPT_BOTH}
    with httpx.Client(timeout=httpx.Timeout(20.0)) as http:
        init = http.post(url, headers=auth, json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                                  "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        session = {**auth, "mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25", "accept": "text/event-stream"}
        admin_api.get(f"/api/maestro/v1/mcp/servers/{server['id']}/tools", {"refresh": "true"})  # the list before
        with http.stream("GET", url, headers=session) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"] == "text/event-stream"
            assert stream.headers["mcp-session-id"] == init.headers["mcp-session-id"]
            # A second GET stream of the same session is refused, on whichever worker it lands
            # (a message goes on one stream only)
            for _ in range(4):
                with httpx.Client(timeout=10.0) as fresh:
                    second = fresh.get(url, headers=session)
                assert second.status_code == 409 and second.json()["error"]["code"] == "stream_exists"
            with httpx.Client(timeout=20.0) as other:
                grow_and_refresh(other, url, token, admin_api, server["id"])
            assert next(events(stream)) == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        # Once it is closed (the worker notices the client leave), the session may open it again
        def reopened() -> bool:
            with httpx.Client(timeout=10.0) as fresh, fresh.stream("GET", url, headers=session) as again:
                return again.status_code == 200

        assert wait_until(reopened, timeout=5)


def test_subscriptions_listen_acknowledges_and_delivers(web_door, admin_api, growable):
    server = register(admin_api, name="growing", url=growable.url())
    token = session_token(run_id="run-listen", servers=[server["id"]])
    url = mcp_url(web_door, "run-listen")
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": ACCEPT_BOTH,
               "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}
    body = {"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen", "params": {
        "notifications": {"toolsListChanged": True, "resourceSubscriptions": ["memo://readme"]},
        "_meta": {META_VERSION: MODERN, META_CAPABILITIES: {}}}}
    admin_api.get(f"/api/maestro/v1/mcp/servers/{server['id']}/tools", {"refresh": "true"})
    with httpx.Client(timeout=httpx.Timeout(20.0)) as http, http.stream("POST", url, headers=headers, json=body) as stream:
        received = events(stream)
        ack = next(received)
        # Only what the gateway honours is acknowledged (no resource subscriptions)
        assert ack == {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                       "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"}, "notifications": {"toolsListChanged": True}}}
        with httpx.Client(timeout=20.0) as other:
            grow_and_refresh(other, url, token, admin_api, server["id"])
        assert next(received) == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed",
                                  "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "sub-1"}}}


def test_a_session_ended_on_one_worker_is_ended_on_every_worker(web_door, admin_api, growable):
    # Given an MCP session used over fresh connections, so both workers serve (and remember) it
    server = register(admin_api, name="growing", url=growable.url())
    token = session_token(run_id="run-ended", servers=[server["id"]])
    url = mcp_url(web_door, "run-ended")
    auth = {"authorization": f"Bearer {token}", "accept": ACCEPT_BOTH}
    init = httpx.post(url, headers=auth, timeout=10, json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = {**auth, "mcp-session-id": init.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}

    def ping() -> int:
        return httpx.post(url, headers=session, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, timeout=10).status_code

    assert [ping() for _ in range(8)] == [200] * 8
    # When it is ended (DELETE) on whichever worker takes that request
    assert httpx.delete(url, headers=session, timeout=10).status_code == 204
    # Then every worker forgets it as soon as the announcement arrives, and for good
    assert wait_until(lambda: ping() == 404 and ping() == 404, timeout=3)
    assert [ping() for _ in range(8)] == [404] * 8


def test_an_upstream_that_says_its_list_changed_is_heard_by_every_stream(web_door, admin_api, telling):
    # Given a client listening, and an upstream that announces changes on the stream of a call
    server = register(admin_api, name="telling", url=telling.url())
    token = session_token(run_id="run-telling", servers=[server["id"]])
    url = mcp_url(web_door, "run-telling")
    admin_api.get(f"/api/maestro/v1/mcp/servers/{server['id']}/tools", {"refresh": "true"})
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": ACCEPT_BOTH,
               "mcp-protocol-version": MODERN, "mcp-method": "subscriptions/listen"}
    body = {"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen", "params": {
        "notifications": {"toolsListChanged": True}, "_meta": {META_VERSION: MODERN, META_CAPABILITIES: {}}}}
    with httpx.Client(timeout=httpx.Timeout(20.0)) as http, http.stream("POST", url, headers=headers, json=body) as stream:
        received = events(stream)
        assert next(received)["method"] == "notifications/subscriptions/acknowledged"
        # When a call through the gateway makes the upstream change its list (no operator refresh)
        call = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": "application/json",
                "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "grow"}
        grown = httpx.post(url, headers=call, timeout=20, json={"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
            "name": "grow", "arguments": {}, "_meta": {META_VERSION: MODERN, META_CAPABILITIES: {}}}})
        added = grown.json()["result"]["content"][0]["text"]
        # Then the gateway refreshes the list, and every open stream hears of it
        assert next(received)["method"] == "notifications/tools/list_changed"
    lister = {"authorization": f"Bearer {token}", "content-type": "application/json", "accept": "application/json",
              "mcp-protocol-version": MODERN, "mcp-method": "tools/list"}
    listed = httpx.post(url, headers=lister, timeout=20, json={
        "jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": {META_VERSION: MODERN, META_CAPABILITIES: {}}}})
    assert added in [tool["name"] for tool in listed.json()["result"]["tools"]]
