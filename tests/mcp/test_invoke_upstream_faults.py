"""Upstream faults through the invoke path: each maps to its status quickly, leaves evidence,
and leaves the gateway healthy."""

from __future__ import annotations

import threading
import time

import pytest

from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: every test here runs through both HTTP doors)
from tests.mcp.invoke_helpers import error_code, evidence, invoke, session_token
from tests.support.services import free_port
from tests.upstreams import launch

pytestmark = pytest.mark.django_db


def test_refused_is_502(client, admin_api):
    register(admin_api, name="gone", url=f"http://127.0.0.1:{free_port()}/mcp")
    response = invoke(client, session_token(), server="gone", tool="echo", arguments={})
    assert response.status_code == 502 and error_code(response) == "upstream_unreachable"
    assert evidence()[0].status == "error"


@pytest.mark.parametrize("path, code", [
    ("/html", "upstream_not_mcp"), ("/badjson", "upstream_not_mcp"), ("/notrpc", "upstream_not_mcp"),
    ("/wrongid", "upstream_not_mcp"), ("/huge", "upstream_too_large"), ("/http500", "upstream_http_error"),
])
def test_garbage_answers_are_502(client, admin_api, faulty, path, code):
    register(admin_api, name="faulty", url=faulty.url(path))
    response = invoke(client, session_token(), server="faulty", tool="echo", arguments={})
    assert response.status_code == 502, response.content
    assert error_code(response) == code
    assert "Traceback" not in response.content.decode()


def test_slow_upstream_is_504_within_the_timeout(client, admin_api, sdk):
    register(admin_api, name="slowpoke", url=sdk.modern_json.url(), timeout_ms=2000)
    token = session_token()
    assert invoke(client, token, server="slowpoke", tool="echo", arguments={"text": "warm"}).status_code == 200
    started = time.monotonic()
    response = invoke(client, token, server="slowpoke", tool="sleep", arguments={"seconds": 10}, timeout_ms=500)
    took = time.monotonic() - started
    assert response.status_code == 504 and error_code(response) == "upstream_timeout"
    assert took < 2.0, f"the 500 ms timeout took {took:.2f}s"
    assert invoke(client, token, server="slowpoke", tool="echo", arguments={"text": "still fine"}).status_code == 200


def test_jsonrpc_error_is_502_with_the_upstreams_code(client, admin_api, sdk):
    register(admin_api, name="modern", url=sdk.modern_json.url())
    response = invoke(client, session_token(), server="modern", tool="boom", arguments={})
    assert response.status_code == 502 and error_code(response) == "upstream_jsonrpc_error"
    details = response.json()["error"]["details"]
    assert isinstance(details["upstream_code"], int) and details["upstream_message"]


def test_upstream_killed_mid_call_is_502(client, admin_api):
    victim = launch.start_sdk("victim", "--mode", "stateless", "--response", "json")
    try:
        launch.wait_ready(victim)
        register(admin_api, name="victim", url=victim.url())
        token = session_token()
        assert invoke(client, token, server="victim", tool="echo", arguments={"text": "warm"}).status_code == 200
        threading.Timer(0.5, victim.process.kill).start()
        response = invoke(client, token, server="victim", tool="sleep", arguments={"seconds": 5})
        assert response.status_code == 502, response.content
        assert error_code(response) in {"upstream_unreachable", "upstream_not_mcp", "upstream_http_error"}
    finally:
        victim.stop()


@pytest.mark.django_db(transaction=True)
def test_in_flight_limit_per_session_is_429(admin_api, sdk, settings, live_server):
    import httpx

    settings.MCP_SESSION_MAX_IN_FLIGHT = 2
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token()
    url = f"{live_server.url}/api/maestro/v1/runs/run-inv/mcp/invoke"
    statuses: list[int] = []

    def call():
        response = httpx.post(url, json={"server": "modern", "tool": "sleep", "arguments": {"seconds": 1.0}},
                              headers={"Authorization": f"Bearer {token}"}, timeout=10)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.15)
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 429]
