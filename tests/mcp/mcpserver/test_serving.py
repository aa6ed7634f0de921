"""What the MCP endpoint serves: names across servers (and a one-server session's transparency),
pagination, the revisions' result shapes, discovery, progress on the event stream, evidence of
reads and gets, and server-everything behind it."""

from __future__ import annotations

import pytest

from mcp.mcpserver import naming
from mcp.models import Invocation
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import client, session_token  # noqa: F401
from tests.mcp.mcpserver.helpers import MODERN, LegacySession, answer_of, messages_of, modern_request

pytestmark = pytest.mark.django_db


def result_of(response) -> dict:
    answer = answer_of(response)
    assert "result" in answer, answer
    return answer["result"]


@pytest.fixture
def two(admin_api, sdk):
    """Two servers of both families, and a session for any server (namespaced names)."""
    register(admin_api, name="alpha", url=sdk.modern_json.url())
    register(admin_api, name="beta", url=sdk.legacy_sse.url())
    return session_token()


# --- names -------------------------------------------------------------------------------------


def test_tools_are_namespaced_with_the_upstream_definitions(client, two):
    tools = result_of(modern_request(client, two, "tools/list"))["tools"]
    names = [tool["name"] for tool in tools]
    assert names[:2] == ["alpha__echo", "alpha__add"] and "beta__region" in names and len(names) == 24
    region = next(tool for tool in tools if tool["name"] == "alpha__region")
    assert region["inputSchema"]["properties"]["region"]["x-mcp-header"] == "Region"  # the upstream's schema, whole


def test_a_one_server_session_sees_the_upstream_names_unchanged(client, admin_api, sdk):
    server = register(admin_api, name="alpha", url=sdk.modern_json.url())
    token = session_token(servers=[server["id"]])
    names = [tool["name"] for tool in result_of(modern_request(client, token, "tools/list"))["tools"]]
    assert names[:3] == ["echo", "add", "sleep"]
    assert result_of(modern_request(client, token, "tools/call", {"name": "echo", "arguments": {"text": "as is"}}))["content"][0]["text"] == "as is"
    assert result_of(modern_request(client, token, "resources/read", {"uri": "memo://readme"}))["contents"][0]["uri"] == "memo://readme"


def test_a_name_too_long_or_taken_gets_a_hashed_short_form():
    table = naming.NameTable(transparent=False)
    assert table.add("a", "b__c") == "a__b__c"
    clash = table.add("a__b", "c")  # would also be a__b__c
    assert clash != "a__b__c" and clash.startswith("a__b__c-") and len(clash) == len("a__b__c-") + 8
    long = table.add("s" * 64, "t" * 100)
    assert len(long) == naming.MAX_NAME and long.startswith("s" * 64 + "__t")
    assert table.resolve(clash) == ("a__b", "c") and table.resolve("a__b__c") == ("a", "b__c")
    assert table.resolve(long) == ("s" * 64, "t" * 100)
    again = naming.NameTable(transparent=False)
    again.add("a", "b__c")
    assert again.add("a__b", "c") == clash  # deterministic


def test_a_resource_uri_maps_back_to_its_server():
    assert naming.resource_uri("files", "file:///x/y", transparent=False) == "maestro://files/file:///x/y"
    assert naming.resource_back("maestro://files/file:///x/y", transparent_server=None) == ("files", "file:///x/y")
    assert naming.resource_back("file:///x/y", transparent_server=None) is None
    assert naming.resource_back("file:///x/y", transparent_server="id-1") == ("id-1", "file:///x/y")


# --- pagination --------------------------------------------------------------------------------


def test_lists_page_with_cursors(client, two, settings):
    settings.MCP_ENDPOINT_PAGE_SIZE = 10
    names, cursor, pages = [], None, 0
    while True:
        page = result_of(modern_request(client, two, "tools/list", {"cursor": cursor} if cursor else {}))
        names += [tool["name"] for tool in page["tools"]]
        pages += 1
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert pages == 3 and len(names) == 24 and len(set(names)) == 24
    everything = result_of(modern_request(client, two, "tools/list", {}, headers={}))  # same order every time
    assert [t["name"] for t in everything["tools"]] == names[:10]


@pytest.mark.parametrize("cursor", ["garbage", naming.cursor_encode("prompts", 0), naming.cursor_encode("tools", 999)])
def test_a_cursor_that_is_not_ours_is_invalid_params(client, two, cursor):
    answer = answer_of(modern_request(client, two, "tools/list", {"cursor": cursor}))
    assert answer["error"]["code"] == -32602


# --- revisions, discovery ----------------------------------------------------------------------


def test_2026_results_carry_result_type_and_cache_hints(client, two):
    listed = result_of(modern_request(client, two, "tools/list"))
    assert listed["resultType"] == "complete" and listed["ttlMs"] == 10_000 and listed["cacheScope"] == "private"
    called = result_of(modern_request(client, two, "tools/call", {"name": "alpha__echo", "arguments": {"text": "x"}}))
    assert called["resultType"] == "complete" and "ttlMs" not in called


def test_session_results_have_no_2026_fields(client, two):
    session = LegacySession(client, two).initialize()
    listed = result_of(session.request("tools/list"))
    assert "resultType" not in listed and "ttlMs" not in listed


def test_server_discover_advertises_only_what_is_served(client, two):
    discovered = result_of(modern_request(client, two, "server/discover"))
    assert discovered["supportedVersions"] == [MODERN, "2025-11-25", "2025-06-18", "2025-03-26"]
    assert set(discovered["capabilities"]) == {"tools", "resources", "prompts", "logging"}
    assert "subscribe" not in discovered["capabilities"]["resources"]
    assert discovered["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "maestro-mcp"


def test_a_2025_03_26_client_without_the_version_header_is_served(client, two):
    session = LegacySession(client, two, version="2025-03-26").initialize()
    response = session.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, **{"mcp-protocol-version": None})
    assert response.json() == {"jsonrpc": "2.0", "id": 5, "result": {}}


def test_initialize_is_not_valid_with_a_2026_header(client, two):
    response = modern_request(client, two, "initialize", {"protocolVersion": MODERN})
    assert response.status_code == 404 and response.json()["error"]["code"] == -32601


# --- streams of one request: progress ----------------------------------------------------------


def test_upstream_progress_reaches_the_client_on_the_event_stream(client, admin_api, sdk):
    server = register(admin_api, name="streamer", url=sdk.modern_sse.url())
    token = session_token(servers=[server["id"]])
    response = modern_request(client, token, "tools/call", {"name": "progress", "arguments": {}}, meta={"progressToken": "p-1"})
    assert response["content-type"] == "text/event-stream"
    messages = messages_of(response)
    assert [m["params"]["progress"] for m in messages[:-1]] == [1, 2, 3]
    assert messages[-1]["result"]["content"][0]["text"] == "done"


def test_a_client_that_accepts_only_json_gets_json(client, admin_api, sdk):
    server = register(admin_api, name="streamer", url=sdk.modern_sse.url())
    token = session_token(servers=[server["id"]])
    response = modern_request(client, token, "tools/call", {"name": "progress", "arguments": {}}, headers={"accept": "application/json"})
    assert response["content-type"] == "application/json" and response.json()["result"]["content"][0]["text"] == "done"


# --- reads and gets are evidence ---------------------------------------------------------------


def test_reads_and_gets_are_recorded_with_their_kind(client, two):
    read = result_of(modern_request(client, two, "resources/read", {"uri": "maestro://beta/memo://notes/today"}))
    assert read["contents"][0]["uri"] == "maestro://beta/memo://notes/today" and read["ttlMs"] == 0
    got = result_of(modern_request(client, two, "prompts/get", {"name": "alpha__greet", "arguments": {"who": "evidence"}}))
    assert got["messages"][0]["content"]["text"] == "Hello, evidence!"
    rows = list(Invocation.objects.order_by("seq"))
    assert [(r.kind, r.server_name, r.tool, r.transport) for r in rows] == [
        ("resource", "beta", "memo://notes/today", "mcp"), ("prompt", "alpha", "greet", "mcp"),
    ]
    assert got["_meta"]["io.maestro/evidence"] == {"seq": 2, "hash": rows[1].hash}


def test_an_unknown_prompt_is_invalid_params(client, two):
    answer = answer_of(modern_request(client, two, "prompts/get", {"name": "alpha__nope"}))
    assert answer["error"]["code"] == -32602 and answer["error"]["data"]["code"] == "prompt_not_found"


# --- server-everything (npm), which nobody here wrote -----------------------------------------


def test_server_everything_behind_the_gateway(client, admin_api, everything):
    register(admin_api, name="everything", url=everything.url())
    token = session_token()
    session = LegacySession(client, token).initialize()
    names = [tool["name"] for tool in result_of(session.request("tools/list"))["tools"]]
    assert "everything__echo" in names and "everything__get-sum" in names
    summed = result_of(session.request("tools/call", {"name": "everything__get-sum", "arguments": {"a": 2, "b": 40}}))
    assert "42" in summed["content"][0]["text"]
    resources = result_of(session.request("resources/list"))["resources"]
    assert resources and all(r["uri"].startswith("maestro://everything/") for r in resources)
    read = result_of(session.request("resources/read", {"uri": resources[0]["uri"]}))
    assert read["contents"][0]["uri"] == resources[0]["uri"]
    prompts = result_of(session.request("prompts/list"))["prompts"]
    simple = next(p for p in prompts if not p.get("arguments"))
    assert result_of(session.request("prompts/get", {"name": simple["name"]}))["messages"]
