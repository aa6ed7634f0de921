"""Traces from a real gateway process over OTLP/HTTP (tests/support/otlp.py receives them): the
control-plane route spans and the session spans, their attributes and parent links. The spans
still queued when the gateway stops are flushed on the way out, so the test waits for them to
arrive rather than for a timer."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import make_key
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import WebServer, project_env

pytestmark = pytest.mark.django_db(transaction=True)

RUN = "run-traces"


def only(spans: list[ReceivedSpan], name: str, **attributes) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and attributes.items() <= s.attributes.items()]
    assert len(found) == 1, f"{len(found)} spans {name} {attributes}: {[(s.name, s.attributes) for s in spans]}"
    return found[0]


def test_route_and_session_spans_reach_an_otlp_receiver(upstream):
    key = make_key(["admin:mcp"])
    headers = {"X-API-Key": key}
    with OtlpReceiver() as receiver:
        # Given the web door exporting traces to the receiver
        env = project_env(WEB_CONCURRENCY="1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="maestro-under-test")
        with WebServer(env) as web:
            api = f"{web.base_url}/api/maestro/v1"
            # When an operator registers a server, opens a session, revokes it, and sends one bad request
            assert httpx.post(f"{api}/mcp/servers", json={"name": "traced", "url": upstream.url()}, headers=headers).status_code == 201
            created = httpx.post(f"{api}/runs/{RUN}/mcp/sessions", json={"scopes": ["mcp:invoke"], "ttl_seconds": 600}, headers=headers)
            assert created.status_code == 201
            sid, token = created.json()["sid"], created.json()["token"]
            assert httpx.delete(f"{api}/runs/{RUN}/mcp/sessions/{sid}", headers=headers).status_code == 204
            assert httpx.post(f"{api}/runs/{RUN}/mcp/sessions", json={"scopes": ["nope!"]}, headers=headers).status_code == 400
        # And the gateway stops (SIGTERM): what it still held is exported on the way out
        spans = receiver.wait_for(lambda spans: len(spans) >= 7, timeout=15)

    # Then the registry call is a SERVER span `mcp/servers` with the HTTP attributes
    servers = only(spans, "mcp/servers")
    assert servers.kind == "SERVER" and servers.parent_span_id == ""
    assert servers.attributes == {"http.request.method": "POST", "http.route": "/api/maestro/v1/mcp/servers", "http.response.status_code": 201}
    assert servers.resource["service.name"] == "maestro-under-test"
    # And each session call is a `mcp/runs` span (the route pattern, not the run id) with its session span inside
    create_route = only(spans, "mcp/runs", **{"http.request.method": "POST", "http.response.status_code": 201})
    assert create_route.attributes["http.route"] == "/api/maestro/v1/runs/{run_id}/mcp/sessions"
    create = only(spans, "mcp.session.create", ttl_seconds=600)
    assert (create.parent_span_id, create.trace_id) == (create_route.span_id, create_route.trace_id)
    assert create.attributes == {"run": RUN, "scopes": ["mcp:invoke"], "servers": [], "ttl_seconds": 600, "persist": False}
    revoke_route = only(spans, "mcp/runs", **{"http.request.method": "DELETE"})
    revoke = only(spans, "mcp.session.revoke")
    assert revoke.parent_span_id == revoke_route.span_id
    assert revoke.attributes == {"run": RUN, "revoked": True}
    # And a refused creation is marked as an error with the gateway's error code
    refused = only(spans, "mcp.session.create", **{"error.type": "invalid_scopes"})
    assert refused.status == "ERROR" and refused.attributes["run"] == RUN
    # And no span carries the session id or the token
    for span in spans:
        assert not any(sid in str(value) or token in str(value) for value in span.attributes.values()), span
