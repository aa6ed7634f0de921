"""Invoke and ListTools over a real grpc channel, through the gateway, to a real upstream MCP server:
results, evidence and receipts as for HTTP, and each auth failure with its status."""

import time

import grpc
import pytest
from prometheus_client import REGISTRY

from mcp.models import Invocation
from mcp.receipts import receipt_verify
from mcp.services.evidence import evidence_verify
from tests.grpc.conftest import rpc_error
from tests.sessions_app.helpers import forge

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_invoke_returns_the_tool_result_with_evidence_and_receipt(gateway, operator, registered, run_id):
    # Given a registered upstream and a session opened by the operator over HTTP
    client = gateway()
    client.token = operator.session(run_id)
    calls_before = sample("mcp_grpc_requests_total", method="Invoke", code="OK")
    # When the run calls a tool over gRPC
    response, trailing = client.invoke(run_id, registered["name"], "echo", {"text": "hello over grpc"})
    # Then the upstream's CallToolResult comes back as a Struct
    assert response.result["content"][0]["text"] == "hello over grpc"
    assert not response.is_error and response.tool == "echo" and response.server == registered["name"]
    assert response.server_id == registered["id"] and response.latency_ms > 0
    # And the signed allow receipt is in the response and in trailing metadata
    assert trailing["x-ig-policy-receipt"] == response.receipt
    claims, valid = receipt_verify(receipt=response.receipt)
    assert valid and claims["decision"] == "allow" and claims["run"] == run_id and claims["tool"] == "echo"
    # And one evidence row, chained, recorded as a gRPC call
    row = Invocation.objects.get(run_id=run_id)
    assert (row.transport, row.status, str(row.id), row.seq, row.hash) == (
        "grpc", "success", response.invocation_id, response.evidence_seq, response.evidence_hash,
    )
    assert row.receipt == response.receipt
    assert evidence_verify(run_id=run_id)["chain"] == "valid"
    assert sample("mcp_grpc_requests_total", method="Invoke", code="OK") == calls_before + 1


def test_whole_numbers_reach_the_tool_as_integers(gateway, operator, registered, run_id):
    # Given Struct carries numbers as doubles
    client = gateway()
    client.token = operator.session(run_id)
    # When the run adds 2 and 3
    response, _ = client.invoke(run_id, registered["name"], "add", {"a": 2, "b": 3})
    # Then the tool saw integers (a float sum would print as "5.0")
    assert response.result["content"][0]["text"] == "5"
    assert response.result["structuredContent"]["sum"] == 5


def test_a_tool_error_is_a_result_not_a_failed_call(gateway, operator, registered, run_id):
    client = gateway()
    client.token = operator.session(run_id)
    response, _ = client.invoke(run_id, registered["name"], "fail")
    assert response.is_error and response.result["isError"] is True
    assert Invocation.objects.get(run_id=run_id).is_error


def test_list_tools_shows_what_the_session_may_call(gateway, operator, upstream, run_id):
    # Given a server whose policy denies one tool
    server = operator.register(upstream.url(), tool_deny=["boom"])
    client = gateway()
    client.token = operator.session(run_id, scopes=["mcp:tools"], servers=[server["name"]])
    # When the run lists its tools
    response, _ = client.list_tools(run_id)
    # Then it sees the server's tools with their schemas, without the denied one
    tools = {t.name: t for t in response.tools}
    assert {"echo", "add", "sleep"} <= set(tools) and "boom" not in tools
    assert tools["echo"].server == server["name"] and tools["echo"].server_id == server["id"]
    assert tools["echo"].input_schema["properties"]["text"]["type"] == "string"


@pytest.mark.parametrize("make_token, expected_code", [
    (lambda run_id: "", "missing_token"),
    (lambda run_id: "not-a-jwt", "malformed_token"),
    (lambda run_id: forge(key=b"k" * 32, run=run_id), "invalid_signature"),
    (lambda run_id: forge(run=run_id, iat=int(time.time()) - 600, exp=int(time.time()) - 300), "token_expired"),
], ids=["missing", "malformed", "foreign-key", "expired"])
def test_a_missing_or_bad_token_is_unauthenticated(gateway, registered, run_id, make_token, expected_code):
    client = gateway()
    error = rpc_error(client.invoke, run_id, registered["name"], "echo", {"text": "x"}, token=make_token(run_id))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    trailing = dict(error.trailing_metadata())
    assert trailing["x-ig-error-code"] == expected_code
    # No policy decision was made, so there is no receipt, and no evidence without a verified session
    assert "x-ig-policy-receipt" not in trailing
    assert not Invocation.objects.filter(run_id=run_id).exists()


def test_authorization_must_be_a_bearer_token(gateway, operator, registered, run_id):
    client = gateway()
    token = operator.session(run_id)
    metadata = (("authorization", f"Basic {token}"),)
    from mcp.grpc import gateway_pb2

    error = rpc_error(client.stub.Invoke, gateway_pb2.InvokeRequest(run_id=run_id, server=registered["name"], tool="echo"), metadata=metadata, timeout=5)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert dict(error.trailing_metadata())["x-ig-error-code"] == "malformed_token"


def test_a_token_of_another_run_is_permission_denied(gateway, operator, registered, run_id):
    # Given a session for another run
    client = gateway()
    client.token = operator.session(f"{run_id}-other")
    # When it is used on this run
    error = rpc_error(client.invoke, run_id, registered["name"], "echo", {"text": "x"})
    # Then the token is refused before any policy decision
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert dict(error.trailing_metadata())["x-ig-error-code"] == "run_mismatch"


def test_a_missing_scope_is_denied_with_a_signed_receipt(gateway, operator, registered, run_id):
    # Given a session that may list tools but not invoke them
    client = gateway()
    client.token = operator.session(run_id, scopes=["mcp:tools"])
    # When it invokes
    error = rpc_error(client.invoke, run_id, registered["name"], "echo", {"text": "x"})
    # Then PERMISSION_DENIED, with the deny receipt in trailing metadata
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    trailing = dict(error.trailing_metadata())
    claims, valid = receipt_verify(receipt=trailing["x-ig-policy-receipt"])
    assert valid and claims["decision"] == "deny" and claims["run"] == run_id
    # And the denial is evidence, carrying the same receipt
    row = Invocation.objects.get(run_id=run_id)
    assert (row.status, row.transport, row.receipt) == ("denied", "grpc", trailing["x-ig-policy-receipt"])


def test_a_server_policy_denial_also_carries_its_receipt(gateway, operator, upstream, run_id):
    server = operator.register(upstream.url(), tool_deny=["echo"])
    client = gateway()
    client.token = operator.session(run_id)
    error = rpc_error(client.invoke, run_id, server["name"], "echo", {"text": "x"})
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    trailing = dict(error.trailing_metadata())
    assert trailing["x-ig-error-code"] == "tool_denied"
    assert receipt_verify(receipt=trailing["x-ig-policy-receipt"])[1]


@pytest.mark.parametrize("tool, arguments, status, code", [
    ("no_such_tool", {}, grpc.StatusCode.NOT_FOUND, "tool_not_found"),
    ("echo", {"text": 5}, grpc.StatusCode.INVALID_ARGUMENT, "invalid_arguments"),
    ("boom", {}, grpc.StatusCode.UNAVAILABLE, None),
])
def test_domain_errors_arrive_as_their_status(gateway, operator, registered, run_id, tool, arguments, status, code):
    client = gateway()
    client.token = operator.session(run_id)
    error = rpc_error(client.invoke, run_id, registered["name"], tool, arguments)
    assert error.code() is status, error.details()
    trailing = dict(error.trailing_metadata())
    assert trailing["x-ig-error-code"] == (code or trailing["x-ig-error-code"])
    assert trailing["x-ig-error-code"] != "internal_error"
    # Every attempt by a verified session is evidence, failed ones included
    assert Invocation.objects.get(run_id=run_id).status == "error"


def test_an_unknown_server_is_not_found(gateway, operator, run_id):
    client = gateway()
    client.token = operator.session(run_id)
    error = rpc_error(client.invoke, run_id, "no-such-server", "echo", {"text": "x"})
    assert error.code() is grpc.StatusCode.NOT_FOUND


# --- values a Struct or JSON cannot carry: a clean status, never an exception's text ------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_in_the_arguments_are_invalid_argument(gateway, operator, registered, run_id, value):
    client = gateway()
    client.token = operator.session(run_id)
    error = rpc_error(client.invoke, run_id, registered["name"], "echo", {"text": value})
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert dict(error.trailing_metadata())["x-ig-error-code"] == "invalid_arguments"
    assert "Traceback" not in error.details() and "Error" not in error.details()
    assert not Invocation.objects.filter(run_id=run_id).exists()


def test_a_result_no_struct_can_carry_is_a_clean_failure_with_its_receipt(gateway, operator, faulty, run_id):
    # Given a tool whose result holds an integer beyond a double's range (JSON carries it, Struct cannot)
    server = operator.register(faulty.url("/mcp-bigint"))
    client = gateway()
    client.token = operator.session(run_id)
    # When it is called over gRPC
    error = rpc_error(client.invoke, run_id, server["name"], "echo", {})
    # Then the call fails with the gateway's own code and words, and the receipt of the decision
    trailing = dict(error.trailing_metadata())
    assert error.code() is grpc.StatusCode.UNAVAILABLE and trailing["x-ig-error-code"] == "upstream_invalid_result"
    assert error.details() == "the tool's result has a number a protobuf Struct cannot carry (beyond a double's range)"
    assert receipt_verify(receipt=trailing["x-ig-policy-receipt"])[1]
    # And the call, which did run, has its row (its result's digest is in it)
    row = Invocation.objects.get(run_id=run_id)
    assert row.status == "success" and row.result_digest


@pytest.fixture
def spans():
    """Traces on, into memory, for this test only."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from maestro import telemetry

    exporter = InMemorySpanExporter()
    telemetry.configure(exporter=exporter)
    yield exporter
    telemetry.shutdown()


def test_a_traceparent_in_the_metadata_is_continued(gateway, operator, registered, run_id, spans):
    client = gateway()
    token = operator.session(run_id)
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    request = __import__("mcp.grpc.gateway_pb2", fromlist=["InvokeRequest"]).InvokeRequest(run_id=run_id, server=registered["name"], tool="echo")
    request.arguments.update({"text": "traced"})
    client.stub.Invoke(request, timeout=10, metadata=(("authorization", f"Bearer {token}"), ("traceparent", f"00-{caller_trace}-{caller_span}-01")))
    [served] = [s for s in spans.get_finished_spans() if s.name == "tools/call echo" and s.kind.name == "SERVER"]
    assert format(served.context.trace_id, "032x") == caller_trace and format(served.parent.span_id, "016x") == caller_span
    assert served.attributes["maestro.transport"] == "grpc"
