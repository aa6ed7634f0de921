"""Upstreams that fail in every way we know: each gives the right status and message, quickly,
never echoes what the upstream sent, and leaves the gateway healthy."""

from __future__ import annotations

import pytest

from mcp.models import McpServer
from mcp.services import registry
from tests.conftest import FAULTY_HUGE_BYTES as HUGE_BYTES
from tests.mcp.helpers import SERVERS, elapsed, register
from tests.support.services import free_port

pytestmark = pytest.mark.django_db

TIMEOUT_MS = 500

# case: (path on the faulty server, or a special target), health status, error code, words in the message
CASES = {
    "refused": ("refused", "unreachable", "upstream_unreachable", "connection refused"),
    "tls-untrusted": ("tls", "unreachable", "upstream_tls_error", "certificate is not trusted"),
    "slow": ("/slow", "unhealthy", "upstream_timeout", "did not answer within its timeout"),
    "html": ("/html", "unhealthy", "upstream_not_mcp", "answered text/html, not MCP"),
    "invalid-json": ("/badjson", "unhealthy", "upstream_not_mcp", "answered invalid JSON"),
    "not-jsonrpc": ("/notrpc", "unhealthy", "upstream_not_mcp", "not JSON-RPC 2.0"),
    "wrong-id": ("/wrongid", "unhealthy", "upstream_not_mcp", "a different JSON-RPC request id"),
    "too-large-streamed": ("/huge", "unhealthy", "upstream_too_large", "more than the limit of 4194304 bytes"),
    "too-large-declared": ("/huge-cl", "unhealthy", "upstream_too_large", "over the limit of 4194304"),
    "too-large-sse": ("/hugesse", "unhealthy", "upstream_too_large", "streamed more than the limit"),
    "empty-sse": ("/emptysse", "unhealthy", "upstream_not_mcp", "ended its event stream without answering"),
    "http-500": ("/http500", "unhealthy", "upstream_http_error", "answered HTTP 500"),
    "redirect": ("/redirect", "unhealthy", "upstream_http_error", "redirect (HTTP 302)"),
}
TOOLS_STATUS = {"upstream_timeout": 504}


def target_url(faulty, target: str) -> str:
    if target == "refused":
        return f"http://127.0.0.1:{free_port()}/mcp"
    if target == "tls":
        return f"https://127.0.0.1:{faulty.extra['tls_port']}/mcp"
    return faulty.url(target)


@pytest.mark.parametrize("case", CASES)
def test_health_of_a_failing_upstream_is_503_with_the_reason(admin_api, faulty, case):
    target, status, code, words = CASES[case]
    # given a registered server that fails this way
    server = register(admin_api, name=case, url=target_url(faulty, target), timeout_ms=TIMEOUT_MS)
    # when its health is checked
    with elapsed() as took:
        response = admin_api.get(f"{SERVERS}/{server['id']}/health")
    # then the answer is 503, says why, and came within the server's timeout (plus a little)
    body = response.json()
    assert response.status_code == 503, body
    assert body["status"] == status and body["error"]["code"] == code
    assert words in body["error"]["message"] and case in body["error"]["message"]
    assert took[0] < TIMEOUT_MS / 1000 + 1.0
    assert "hunter2" not in response.content.decode()  # the 500 page's body is not passed on
    # and the result is stored on the server
    row = McpServer.objects.get(pk=server["id"])
    assert (row.health_status, row.health_error_code) == (status, code) and row.health_checked_at is not None
    assert admin_api.get(f"{SERVERS}/{server['id']}").json()["health"]["error"]["code"] == code


@pytest.mark.parametrize("case", CASES)
def test_tools_of_a_failing_upstream_is_an_error_in_the_error_shape(admin_api, faulty, case):
    target, _, code, words = CASES[case]
    server = register(admin_api, name=case, url=target_url(faulty, target), timeout_ms=TIMEOUT_MS)
    with elapsed() as took:
        response = admin_api.get(f"{SERVERS}/{server['id']}/tools")
    assert response.status_code == TOOLS_STATUS.get(code, 502)
    assert response.json() == {"error": {"code": code, "message": response.json()["error"]["message"]}}
    assert words in response.json()["error"]["message"]
    assert took[0] < TIMEOUT_MS / 1000 + 1.0
    assert McpServer.objects.get(pk=server["id"]).tools_cache is None


def test_an_html_answer_is_named_but_never_echoed(admin_api, faulty):
    # A registered URL may point at anything; a probe (which any operator may trigger) stores its
    # error, so what the target answered must not come back through it.
    server = register(admin_api, name="web-page", url=faulty.url("/html"), timeout_ms=TIMEOUT_MS)
    message = admin_api.get(f"{SERVERS}/{server['id']}/health").json()["error"]["message"]
    assert message == "MCP server 'web-page' answered text/html, not MCP"


def test_a_large_cap_lets_the_same_upstream_through(settings, admin_api, faulty):
    # The cap is the gateway's setting, not a property of the upstream: raise it and the big body is
    # read whole, and then judged on what it says (a result with no protocol version in it).
    settings.MCP_UPSTREAM_MAX_RESPONSE_BYTES = HUGE_BYTES * 2
    server = register(admin_api, name="big-but-allowed", url=faulty.url("/huge-cl"), timeout_ms=5000)
    body = admin_api.get(f"{SERVERS}/{server['id']}/health").json()
    assert body["error"]["code"] == "upstream_protocol_unsupported"


@pytest.mark.django_db(transaction=True)  # the probes run in threads, which must see the rows
def test_the_gateway_stays_healthy_after_every_failure(admin_api, client, faulty, sdk):
    # given every failing upstream, probed at once
    for case, (target, *_rest) in CASES.items():
        register(admin_api, name=case, url=target_url(faulty, target), timeout_ms=TIMEOUT_MS)
    good = register(admin_api, name="good", url=sdk.modern_json.url(), timeout_ms=TIMEOUT_MS)
    with elapsed() as took:
        results = registry.servers_probe(servers=McpServer.objects.filter(name__in=list(CASES)))
    assert set(results.values()) == {"unhealthy", "unreachable"} and len(results) == len(CASES)
    assert took[0] < 2 * TIMEOUT_MS / 1000 + 2.0  # in parallel, each bounded by its timeout
    # then the gateway itself and a good upstream still answer at once
    assert client.get("/api/health").status_code == 200
    with elapsed() as took:
        response = admin_api.get(f"{SERVERS}/{good['id']}/health")
    assert response.status_code == 200 and took[0] < 0.5
