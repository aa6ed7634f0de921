"""The MCP client (`mcp.upstream.client`) against real SDK servers of both protocol families.

Each test uses a fresh `UpstreamClient` (fresh process-local state, like a new worker) unless it
is about the process-wide one; the shared cache is the real Redis of the test session.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.cache import cache

from mcp.upstream import errors as E
from maestro import bridge
from mcp.upstream.client import get_client
from tests.mcp.conftest import SDK_TOOL_COUNT
from tests.mcp.helpers import SyncClient, counting, elapsed, spec_for, text_of

FAMILIES = {
    "modern_json": ("2026-07-28", False),
    "modern_sse": ("2026-07-28", False),
    "legacy_sse": ("2025-11-25", True),
    "legacy_json": ("2025-06-18", True),
    "legacy_stateless": ("2025-03-26", False),
}


@pytest.fixture
def client():
    client = SyncClient()
    yield client
    client.close()


def whoami(client, server, key):
    return client.call_tool(server=server, name="whoami", arguments={}, session_key=key, timeout_s=5)["structuredContent"]


@pytest.mark.parametrize("which", FAMILIES)
def test_probe_negotiates_the_newest_revision_each_server_speaks(sdk, client, which):
    # given an SDK server of one family
    upstream = getattr(sdk, which)
    # when it is probed
    probe = client.probe(server=spec_for(upstream, name=which), timeout_s=5)
    # then the revision is the newest both sides speak, and the server says who it is
    assert probe.protocol_version == FAMILIES[which][0]
    assert probe.server_info["name"] == upstream.name
    assert probe.latency_ms > 0


@pytest.mark.parametrize("which", FAMILIES)
def test_list_tools_follows_every_page(sdk, client, which):
    upstream = getattr(sdk, which)
    with counting(upstream) as seen:
        tools = client.list_tools(server=spec_for(upstream, name=which), timeout_s=5)
    names = [tool["name"] for tool in tools]
    assert len(names) == SDK_TOOL_COUNT == len(set(names))
    assert {"echo", "whoami", "extra_02"} <= set(names)
    assert seen["tools/list"] == 3  # 4 + 4 + 4


@pytest.mark.parametrize("which", FAMILIES)
def test_call_tool_returns_results_and_tool_errors_as_results(sdk, client, which):
    server = spec_for(getattr(sdk, which), name=which)
    echoed = client.call_tool(server=server, name="echo", arguments={"text": "héllo"}, session_key="run-1", timeout_s=5)
    failed = client.call_tool(server=server, name="fail", arguments={}, session_key="run-1", timeout_s=5)
    assert text_of(echoed) == "héllo" and not echoed.get("isError")
    assert failed["isError"] is True and text_of(failed) == "the tool failed"


@pytest.mark.parametrize("which", ["modern_sse", "legacy_sse", "modern_json", "legacy_json"])
def test_notifications_before_the_answer_are_skipped(sdk, client, which):
    # given a tool that reports progress before it answers (SSE servers stream the notifications)
    server = spec_for(getattr(sdk, which), name=which)
    # when it is called, the answer is the result, whatever came before it on the stream
    result = client.call_tool(server=server, name="progress", arguments={}, session_key="run-progress", timeout_s=5)
    assert text_of(result) == "done"


def test_the_2026_sse_server_really_streams_notifications_first(sdk):
    # Guards the test above: a 2026-07-28 SDK server answers JSON unless the handler emits first.
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "progress", "arguments": {}, "_meta": meta}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "progress"}
    raw = httpx.post(sdk.modern_sse.url(), json=body, headers=headers, timeout=5)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.index("notifications/progress") < raw.text.index('"result"')


@pytest.mark.parametrize("which", ["modern_json", "legacy_sse"])
def test_a_jsonrpc_error_is_typed_with_the_upstream_code(sdk, client, which):
    server = spec_for(getattr(sdk, which), name=which)
    with pytest.raises(E.UpstreamJsonRpcError) as caught:
        client.call_tool(server=server, name="boom", arguments={}, session_key="run-1", timeout_s=5)
    assert caught.value.details == {"upstream_code": -32050, "upstream_message": "boom happened"}
    # The upstream's own words travel in details only, never in the message (which a health
    # probe stores): a registered URL may point at something that is not an MCP server.
    assert "-32050" in caught.value.message and which in caught.value.message
    assert "boom happened" not in caught.value.message


@pytest.mark.parametrize("which", ["modern_json", "legacy_sse", "legacy_stateless"])
def test_the_hot_path_never_repeats_a_handshake(sdk, client, which):
    upstream = getattr(sdk, which)
    server = spec_for(upstream, name=which)
    client.call_tool(server=server, name="echo", arguments={"text": "first"}, session_key="run-1", timeout_s=5)
    with counting(upstream) as seen:
        for i in range(5):
            client.call_tool(server=server, name="echo", arguments={"text": str(i)}, session_key="run-1", timeout_s=5)
    assert seen == {"tools/call": 5}


def test_a_new_worker_reuses_the_negotiation_from_the_shared_cache(sdk, client):
    server = spec_for(sdk.modern_json, name="modern")
    client.probe(server=server, timeout_s=5)
    other_worker = SyncClient()
    with counting(sdk.modern_json) as seen:
        other_worker.call_tool(server=server, name="echo", arguments={"text": "x"}, session_key=None, timeout_s=5)
    assert seen == {"tools/call": 1}


def test_each_maestro_session_gets_its_own_upstream_session(sdk, client):
    server = spec_for(sdk.legacy_sse, name="legacy")
    first, again, other = whoami(client, server, "run-a"), whoami(client, server, "run-a"), whoami(client, server, "run-b")
    assert first["session"] and first["session"] == again["session"]
    assert other["session"] and other["session"] != first["session"]
    assert first["protocol"] == "2025-11-25"


def test_another_worker_continues_the_upstream_session_from_the_shared_cache(sdk, client):
    # given a session opened by one worker
    server = spec_for(sdk.legacy_json, name="legacy-json")
    opened = whoami(client, server, "run-shared")
    # when another worker (its own client, nothing in memory) calls for the same Maestro session
    with counting(sdk.legacy_json) as seen:
        continued = whoami(SyncClient(), server, "run-shared")
    # then it continues the same upstream session, with no handshake
    assert continued["session"] == opened["session"]
    assert continued["protocol"] == "2025-06-18"
    assert seen == {"tools/call": 1}


def test_a_session_the_upstream_forgot_is_reinitialized_once(sdk, client):
    # given an upstream session that the upstream has since dropped (404 from then on)
    server = spec_for(sdk.legacy_sse, name="legacy")
    old = whoami(client, server, "run-404")["session"]
    gone = httpx.delete(server.url, headers={"Mcp-Session-Id": old, "MCP-Protocol-Version": "2025-11-25"}, timeout=5)
    assert gone.status_code == 200
    # when the run calls again
    with counting(sdk.legacy_sse) as seen:
        new = whoami(client, server, "run-404")["session"]
    # then the client re-initialized once and retried, and the new session is the shared one
    assert new and new != old
    assert seen["initialize"] == 1 and seen["tools/call"] == 2
    assert whoami(SyncClient(), server, "run-404")["session"] == new


def test_close_session_deletes_the_upstream_session(sdk, client):
    server = spec_for(sdk.legacy_sse, name="legacy")
    old = whoami(client, server, "run-close")["session"]
    with counting(sdk.legacy_sse) as seen:
        client.close_session(server=server, session_key="run-close")
    assert seen == {"DELETE": 1}
    assert whoami(client, server, "run-close")["session"] != old
    client.close_session(server=server, session_key="never-opened")  # nothing to do, no error


@pytest.mark.parametrize("which", ["legacy_sse", "modern_sse"])
def test_concurrent_calls_on_one_session_all_get_answers(sdk, client, which):
    # The SDK never answers a second in-flight request with a duplicate id: unique ids are required.
    server = spec_for(getattr(sdk, which), name=which)
    whoami(client, server, "run-busy")
    with elapsed() as took, ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda i: client.call_tool(server=server, name="sleep", arguments={"seconds": 0.3}, session_key="run-busy", timeout_s=5), range(12)))
    assert [text_of(r) for r in results] == ["slept"] * 12
    assert took[0] < 12 * 0.3 / 2  # they overlapped


def test_arguments_mirrored_in_mcp_param_headers_are_learned_then_sent(sdk, client):
    # given a 2026-07-28 server whose tool declares x-mcp-header, and a client that never listed it
    server = spec_for(sdk.modern_json, name="modern")
    with counting(sdk.modern_json) as seen:
        first = client.call_tool(server=server, name="region", arguments={"region": "eu west ü"}, session_key=None, timeout_s=5)
    # then the server's header-mismatch answer made the client learn the schema and retry once
    assert text_of(first) == "eu west ü"
    assert seen == {"server/discover": 1, "tools/call": 2, "tools/list": 3}
    with counting(sdk.modern_json) as seen:
        client.call_tool(server=server, name="region", arguments={"region": "us"}, session_key=None, timeout_s=5)
    assert seen == {"tools/call": 1}


def test_a_slow_tool_times_out_at_the_deadline(sdk, client):
    server = spec_for(sdk.modern_json, name="modern")
    client.probe(server=server, timeout_s=5)
    with elapsed() as took, pytest.raises(E.UpstreamTimedOut) as caught:
        client.call_tool(server=server, name="sleep", arguments={"seconds": 5}, session_key=None, timeout_s=0.4)
    assert caught.value.code == "upstream_timeout"
    assert 0.35 < took[0] < 1.5


@pytest.mark.parametrize("which", ["modern_json", "legacy_sse"])
def test_a_result_over_the_size_cap_is_refused(sdk, client, which):
    server = spec_for(getattr(sdk, which), name=which, max_bytes=64 * 1024)
    with pytest.raises(E.UpstreamTooLarge) as caught:
        client.call_tool(server=server, name="big", arguments={"n": 200_000}, session_key="run-big", timeout_s=5)
    assert "65536" in caught.value.message
    small = client.call_tool(server=server, name="big", arguments={"n": 1000}, session_key="run-big", timeout_s=5)
    assert len(text_of(small)) == 1000


def test_upstream_auth_headers_are_sent_and_never_shown(sdk, client):
    server = spec_for(sdk.modern_json, name="modern", headers={"Authorization": "Bearer top-secret-value"})
    assert "top-secret-value" not in repr(server)
    assert text_of(client.call_tool(server=server, name="echo", arguments={"text": "ok"}, session_key=None, timeout_s=5)) == "ok"


def test_session_ids_are_kept_in_the_shared_cache_not_in_memory(sdk, client):
    server = spec_for(sdk.legacy_sse, name="legacy")
    sid = whoami(client, server, "run-cache")["session"]
    cache.clear()  # the shared cache lost everything (e.g. Redis restarted)
    assert whoami(client, server, "run-cache")["session"] != sid


def test_get_client_is_one_client_per_event_loop():
    # Connections belong to the loop that opened them: every call on one loop shares one client,
    # and another loop (another worker process, in production) gets its own.
    async def clients():
        return get_client(), get_client()

    first, again = bridge.run(clients())
    assert first is again
    import asyncio

    other, _ = asyncio.run(clients())
    assert other is not first
