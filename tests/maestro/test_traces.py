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


def test_a_tool_call_is_one_trace_from_the_caller_through_the_gateway_to_the_upstream(upstream):
    # Given the web door exporting traces, a server and a session
    key = make_key(["admin:mcp"])
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with OtlpReceiver() as receiver:
        env = project_env(WEB_CONCURRENCY="1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        with WebServer(env) as web:
            api = f"{web.base_url}/api/maestro/v1"
            assert httpx.post(f"{api}/mcp/servers", json={"name": "traced", "url": upstream.url()}, headers={"X-API-Key": key}).status_code == 201
            token = httpx.post(f"{api}/runs/{RUN}/mcp/sessions", json={"scopes": ["mcp:invoke"]}, headers={"X-API-Key": key}).json()["token"]
            # When a caller in a trace of its own (W3C traceparent) calls a tool
            answer = httpx.post(
                f"{api}/runs/{RUN}/mcp/invoke", json={"server": "traced", "tool": "echo", "arguments": {"text": "t"}},
                headers={"Authorization": f"Bearer {token}", "traceparent": f"00-{caller_trace}-{caller_span}-01"}, timeout=10,
            )
            assert answer.status_code == 200
            carried = httpx.get(upstream.url("/last-call"), timeout=5).json()
        spans = receiver.wait_for(lambda spans: any(s.name == "tools/call echo" and s.kind == "CLIENT" for s in spans), timeout=15)

    # Then the route span continues the caller's trace
    route = only(spans, "mcp/runs", **{"http.route": "/api/maestro/v1/runs/{run_id}/mcp/invoke"})
    assert (route.trace_id, route.parent_span_id) == (caller_trace, caller_span)
    # And inside it a SERVER span for the MCP request, named as the conventions name it
    served = [s for s in spans if s.name == "tools/call echo" and s.kind == "SERVER"][0]
    assert served.parent_span_id == route.span_id and served.trace_id == caller_trace
    assert served.attributes["mcp.method.name"] == "tools/call" and served.attributes["gen_ai.tool.name"] == "echo"
    assert served.attributes["gen_ai.operation.name"] == "execute_tool" and served.attributes["network.transport"] == "tcp"
    assert served.attributes["maestro.decision"] == "allow" and served.attributes["maestro.status"] == "success"
    authenticated = [s for s in spans if s.name == "mcp.session.authenticate"][0]
    assert authenticated.parent_span_id == served.span_id and authenticated.attributes == {"run": RUN}
    # And a CLIENT span for the request upstream, whose context the upstream received twice over
    client = [s for s in spans if s.name == "tools/call echo" and s.kind == "CLIENT"][0]
    assert client.parent_span_id == served.span_id and client.trace_id == caller_trace
    assert client.attributes["mcp.protocol.version"] == "2026-07-28" and client.attributes["jsonrpc.request.id"]
    assert client.attributes["server.address"] == "127.0.0.1" and client.attributes["server.port"] == upstream.port
    sent = f"00-{caller_trace}-{client.span_id}-01"
    assert carried == {"traceparent_header": sent, "traceparent_meta": sent}


def test_an_mcp_client_s_trace_context_in_params_meta_is_continued(upstream):
    from tests.mcp.mcpserver.helpers import modern_request

    # Given the web door exporting traces, a server and a one-server session
    key = make_key(["admin:mcp"])
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with OtlpReceiver() as receiver:
        env = project_env(WEB_CONCURRENCY="1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        with WebServer(env) as web:
            api = f"{web.base_url}/api/maestro/v1"
            created = httpx.post(f"{api}/mcp/servers", json={"name": "traced", "url": upstream.url()}, headers={"X-API-Key": key})
            token = httpx.post(f"{api}/runs/{RUN}/mcp/sessions", json={"scopes": ["mcp:invoke"], "servers": [created.json()["id"]]},
                               headers={"X-API-Key": key}).json()["token"]
            # When an MCP client calls a tool with its trace context only in params._meta (no header)
            with httpx.Client(base_url=web.base_url, timeout=10) as client:
                answer = modern_request(client, token, "tools/call", {"name": "echo", "arguments": {"text": "t"}},
                                        run_id=RUN, meta={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
            assert answer.status_code == 200 and "result" in answer.json(), answer.text
            carried = httpx.get(upstream.url("/last-call"), timeout=5).json()
        spans = receiver.wait_for(lambda spans: any(s.name == "tools/call echo" and s.kind == "CLIENT" for s in spans), timeout=15)

    # Then the gateway's SERVER span for the call continues the client's trace
    served = [s for s in spans if s.name == "tools/call echo" and s.kind == "SERVER"][0]
    assert (served.trace_id, served.parent_span_id) == (caller_trace, caller_span)
    assert served.attributes["maestro.transport"] == "mcp"
    # And the upstream received the gateway's own CLIENT span as its parent, in the same trace
    client_span = [s for s in spans if s.name == "tools/call echo" and s.kind == "CLIENT"][0]
    assert client_span.parent_span_id == served.span_id
    sent = f"00-{caller_trace}-{client_span.span_id}-01"
    assert carried == {"traceparent_header": sent, "traceparent_meta": sent}
