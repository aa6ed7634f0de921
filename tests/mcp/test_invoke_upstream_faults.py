"""Upstream faults through the invoke path: each maps to its status quickly, leaves evidence,
and leaves the gateway healthy."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.mcp.helpers import register, stats
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: the web door as deployed, in this process)
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
        before = stats(victim).get("tools/call", 0)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(invoke, client, token, server="victim", tool="sleep", arguments={"seconds": 5})
            wait_until(lambda: stats(victim).get("tools/call", 0) > before)  # the tool is running
            victim.process.kill()
            response = pending.result()
        assert response.status_code == 502, response.content
        assert error_code(response) == "upstream_unreachable"
        assert [row.status for row in evidence()] == ["success", "error"]
    finally:
        victim.stop()


def test_in_flight_limit_per_session_is_429(client, admin_api, sdk, settings):
    # Given a session allowed two calls at once, and two slow calls in flight
    settings.MCP_SESSION_MAX_IN_FLIGHT = 2
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token()
    before = stats(sdk.modern_json).get("tools/call", 0)
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = [pool.submit(invoke, client, token, server="modern", tool="sleep", arguments={"seconds": 1.0}) for _ in range(2)]
        wait_until(lambda: stats(sdk.modern_json).get("tools/call", 0) - before >= 2)
        # When a third arrives while both are running, it is refused at once
        third = invoke(client, token, server="modern", tool="echo", arguments={"text": "x"})
        assert third.status_code == 429 and error_code(third) == "too_many_in_flight"
        assert [f.result().status_code for f in slow] == [200, 200]
    # Then the slots came back: the next call goes through
    assert invoke(client, token, server="modern", tool="echo", arguments={"text": "x"}).status_code == 200


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)
