"""Live health probes and tool discovery through the API, against real upstreams: the SDK servers
of both families and @modelcontextprotocol/server-everything from npm; the periodic probe task and
the Prometheus health gauge."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.core.cache import cache
from django.utils import timezone

from mcp import tasks
from mcp.models import McpServer
from maestro import bridge
from mcp.services import catalog, registry
from tests.mcp.conftest import SDK_TOOL_COUNT
from tests.mcp.helpers import SERVERS, SyncClient, counting, register, text_of
from tests.support.services import free_port

pytestmark = pytest.mark.django_db

FAMILIES = {
    "modern_json": "2026-07-28",
    "modern_sse": "2026-07-28",
    "legacy_sse": "2025-11-25",
    "legacy_json": "2025-06-18",
    "legacy_stateless": "2025-03-26",
}


@pytest.mark.parametrize("which", FAMILIES)
def test_health_of_a_live_server_is_200_and_stored(admin_api, sdk, which):
    upstream = getattr(sdk, which)
    server = register(admin_api, name=which.replace("_", "-"), url=upstream.url())
    response = admin_api.get(f"{SERVERS}/{server['id']}/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "healthy" and body["protocol_version"] == FAMILIES[which]
    assert body["server_info"] == {"name": upstream.name, "version": "9.9.9"}
    assert 0 < body["latency_ms"] < 1000 and body["checked_at"]
    stored = admin_api.get(f"{SERVERS}/{server['id']}").json()["health"]
    assert stored["status"] == "healthy" and stored["protocol_version"] == FAMILIES[which] and stored["error"] is None


def test_a_recovered_server_turns_healthy_and_forgets_its_error(admin_api, sdk):
    server = register(admin_api, name="flaky", url=f"http://127.0.0.1:{free_port()}/mcp", timeout_ms=500)
    assert admin_api.get(f"{SERVERS}/flaky/health").status_code == 503
    admin_api.patch(f"{SERVERS}/flaky", {"url": sdk.modern_json.url()}, format="json")
    assert admin_api.get(f"{SERVERS}/flaky/health").status_code == 200
    row = McpServer.objects.get(pk=server["id"])
    assert (row.health_status, row.health_error_code, row.health_error) == ("healthy", "", "")


@pytest.mark.parametrize("which", ["modern_json", "legacy_sse"])
def test_tools_are_discovered_once_then_served_from_the_cache(admin_api, sdk, which):
    upstream = getattr(sdk, which)
    server = register(admin_api, name="tooly", url=upstream.url(), tool_deny=["extra_*"])
    # when the tools are first asked for, they are discovered over MCP (every page)
    with counting(upstream) as seen:
        first = admin_api.get(f"{SERVERS}/{server['id']}/tools").json()
    assert first["count"] == SDK_TOOL_COUNT and first["cached"] is False and seen["tools/list"] == 3
    assert first["filtered_out"] == ["extra_00", "extra_01", "extra_02"]
    echo = next(t for t in first["tools"] if t["name"] == "echo")
    assert echo["inputSchema"]["required"] == ["text"]
    # then asking again does not reach the upstream
    with counting(upstream) as seen:
        again = admin_api.get(f"{SERVERS}/{server['id']}/tools").json()
    # (a DELETE of the first listing's throwaway session may still land: it is sent in the background)
    assert set(seen) <= {"DELETE"} and again["cached"] is True and again["fetched_at"] == first["fetched_at"]
    # and ?refresh=true does
    with counting(upstream) as seen:
        refreshed = admin_api.get(f"{SERVERS}/{server['id']}/tools?refresh=true").json()
    assert seen["tools/list"] == 3 and refreshed["cached"] is False and refreshed["fetched_at"] > first["fetched_at"]
    assert admin_api.get(f"{SERVERS}/{server['id']}").json()["tools_count"] == SDK_TOOL_COUNT


def test_stale_tools_are_refetched_after_the_ttl(admin_api, sdk, settings):
    server = register(admin_api, name="ttl", url=sdk.modern_json.url())
    admin_api.get(f"{SERVERS}/ttl/tools")
    McpServer.objects.filter(pk=server["id"]).update(tools_fetched_at=timezone.now() - timedelta(seconds=settings.MCP_TOOLS_CACHE_TTL_SECONDS + 1))
    with counting(sdk.modern_json) as seen:
        assert admin_api.get(f"{SERVERS}/ttl/tools").json()["cached"] is False
    assert seen["tools/list"] == 3


def test_changing_the_url_drops_the_cached_tools(admin_api, sdk):
    register(admin_api, name="moving", url=sdk.modern_json.url())
    admin_api.get(f"{SERVERS}/moving/tools")
    moved = admin_api.patch(f"{SERVERS}/moving", {"url": sdk.legacy_sse.url()}, format="json").json()
    assert moved["tools_count"] is None
    with counting(sdk.legacy_sse) as seen:
        assert admin_api.get(f"{SERVERS}/moving/tools").json()["count"] == SDK_TOOL_COUNT
    assert seen["tools/list"] == 3


def test_refresh_must_be_a_boolean(admin_api, sdk):
    register(admin_api, name="strict", url=sdk.modern_json.url())
    response = admin_api.get(f"{SERVERS}/strict/tools?refresh=please")
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "refresh"


def hot_path_tools(ref: str) -> list[str]:
    """The tool names a call would see (mcp.services.catalog), looked up afresh by this process."""
    async def names():
        snapshot, spec = await catalog.server_resolve(ref=ref)
        return list(await catalog.server_tools(server=snapshot, spec=spec))

    registry.local_cache_clear()
    return bridge.run(names())


@pytest.mark.django_db(transaction=True)  # the catalog reads through its own connections
def test_the_hot_path_tool_list_comes_from_the_shared_cache(admin_api, sdk):
    server = register(admin_api, name="hot", url=sdk.modern_json.url())
    with counting(sdk.modern_json) as seen:
        first = hot_path_tools("hot")
        second = hot_path_tools("hot")  # a fresh process-local cache: the shared one answers
    assert len(first) == SDK_TOOL_COUNT and second == first and seen["tools/list"] == 3
    # when the upstream goes away and the list must be refetched, the previous list still serves
    McpServer.objects.filter(pk=server["id"]).update(url=f"http://127.0.0.1:{free_port()}/mcp", tools_fetched_at=timezone.now() - timedelta(days=1))
    registry.registry_changed(server_id=server["id"])
    assert hot_path_tools("hot") == first


# --- server-everything, which nobody here wrote -------------------------------------------------


def test_server_everything_registers_probes_and_lists_its_tools(admin_api, everything):
    server = register(admin_api, name="everything", url=everything.url(), tags=["reference"])
    health = admin_api.get(f"{SERVERS}/{server['id']}/health")
    assert health.status_code == 200, health.content
    assert health.json()["protocol_version"] == "2025-11-25"
    assert health.json()["server_info"]["name"] == "mcp-servers/everything"
    tools = admin_api.get(f"{SERVERS}/{server['id']}/tools").json()
    names = {tool["name"] for tool in tools["tools"]}
    assert tools["count"] == len(names) >= 13
    assert {"echo", "get-sum", "get-structured-content", "trigger-long-running-operation"} <= names


def test_server_everything_tools_are_called_on_a_per_run_session_that_survives_expiry(admin_api, everything):
    register(admin_api, name="everything", url=everything.url())
    spec = registry.server_spec(registry.server_get(ref="everything"))
    client = SyncClient()
    summed = client.call_tool(server=spec, name="get-sum", arguments={"a": 2, "b": 40}, session_key="run-e", timeout_s=10)
    assert "42" in text_of(summed)
    # the upstream forgets the session (server-everything then answers 400 "No valid session ID")
    sid = cache.get(client._session_key(spec, "run-e"))["sid"]
    assert httpx.delete(spec.url, headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}, timeout=5).status_code == 200
    echoed = client.call_tool(server=spec, name="echo", arguments={"message": "again"}, session_key="run-e", timeout_s=10)
    assert text_of(echoed) == "Echo: again"
    client.close_session(server=spec, session_key="run-e")


# --- the periodic probe and the gauge ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the probes run in a thread pool with their own connections
def test_the_periodic_probe_stores_health_and_the_gauge_shows_it(admin_api, client, sdk):
    register(admin_api, name="up", url=sdk.modern_json.url())
    register(admin_api, name="down", url=f"http://127.0.0.1:{free_port()}/mcp", timeout_ms=500)
    register(admin_api, name="off", url=f"http://127.0.0.1:{free_port()}/mcp", enabled=False)
    # when beat runs the task
    assert tasks.probe_all_servers() == {"up": "healthy", "down": "unreachable"}
    # then every enabled server's result is stored, and the disabled one was left alone
    statuses = dict(McpServer.objects.values_list("name", "health_status"))
    assert statuses == {"up": "healthy", "down": "unreachable", "off": "unknown"}
    metrics = client.get("/metrics").content.decode()
    assert 'maestro_mcp_server_healthy{server="up"} 1.0' in metrics
    assert 'maestro_mcp_server_healthy{server="down"} 0.0' in metrics
    assert 'maestro_mcp_server_health_status{server="down",status="unreachable"} 1.0' in metrics
    assert 'server="off"' not in metrics


def test_a_probe_round_still_running_makes_the_next_one_a_no_op(sdk):
    registry.server_create(data={"name": "busy", "url": sdk.modern_json.url()})
    cache.add(tasks.LOCK_KEY, 1, 60)
    assert tasks.probe_all_servers() == {}
    cache.delete(tasks.LOCK_KEY)
    assert tasks.probe_all_servers() == {"busy": "healthy"}
