"""Deadlines (the client's, and the server's default) against a slow tool, and the in-flight limit."""

import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from mcp.models import Invocation
from tests.grpc.conftest import rpc_error
from tests.support.services import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def echo_succeeds(client, run_id, server) -> bool:
    try:
        client.invoke(run_id, server, "echo", {"text": "after"}, timeout=5)
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        return False
    return True


def test_the_client_deadline_bounds_the_upstream_call(gateway, operator, registered, run_id):
    # Given one in-flight slot and a tool that sleeps 8 s
    client = gateway(max_in_flight=1)
    client.token = operator.session(run_id)
    started = time.monotonic()
    # When the client gives the call 0.5 s
    error = rpc_error(client.invoke, run_id, registered["name"], "sleep", {"seconds": 8}, timeout=0.5)
    # Then it gets DEADLINE_EXCEEDED on time
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5
    # And the server abandoned the upstream request: the only slot is free again long before the
    # tool would have finished (a handler still waiting on the upstream would hold it for 8 s)
    assert wait_until(lambda: echo_succeeds(client, run_id, registered["name"]), timeout=2.0)
    assert time.monotonic() - started < 3.0
    timed_out = Invocation.objects.get(run_id=run_id, tool="sleep")
    # (the gateway's timeout and the client's deadline fire together: whichever ends the call names it)
    assert timed_out.status == "error" and timed_out.error_code in ("upstream_timeout", "deadline_exceeded", "cancelled")


def test_without_a_deadline_the_server_default_applies(gateway, operator, registered, run_id):
    # Given MCP_GRPC_DEFAULT_DEADLINE_MS=600 and a tool that sleeps 8 s
    client = gateway(default_deadline_ms=600)
    client.token = operator.session(run_id)
    started = time.monotonic()
    # When the client sets no deadline of its own
    from mcp.grpc import gateway_pb2

    request = gateway_pb2.InvokeRequest(run_id=run_id, server=registered["name"], tool="sleep")
    request.arguments.update({"seconds": 8})
    error = rpc_error(client.stub.Invoke, request, metadata=(("authorization", f"Bearer {client.token}"),))
    elapsed = time.monotonic() - started
    # Then the server ends the call with DEADLINE_EXCEEDED after about 600 ms, saying why
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.5 < elapsed < 2.5, elapsed
    assert dict(error.trailing_metadata())["x-ig-error-code"] in ("upstream_timeout", "deadline_exceeded")


def test_one_call_over_the_in_flight_limit_is_refused_at_once(gateway, operator, registered, run_id):
    # Given MCP_GRPC_MAX_IN_FLIGHT=3
    limit = 3
    client = gateway(max_in_flight=limit)
    client.token = operator.session(run_id)
    outcomes: list = []
    barrier = threading.Barrier(limit + 1)

    def slow_call():
        barrier.wait()
        started = time.monotonic()
        try:
            client.invoke(run_id, registered["name"], "sleep", {"seconds": 1.5}, timeout=10)
            outcomes.append(("OK", time.monotonic() - started, {}))
        except grpc.RpcError as exc:
            outcomes.append((exc.code().name, time.monotonic() - started, dict(exc.trailing_metadata() or ())))

    # When N+1 slow calls start together
    threads = [threading.Thread(target=slow_call) for _ in range(limit + 1)]
    for thread in threads:
        thread.start()
    # Then, while N are in flight, the gauge shows it and the health check still answers
    assert wait_until(lambda: REGISTRY.get_sample_value("mcp_grpc_in_flight") == limit, timeout=1.0)
    health = health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    for thread in threads:
        thread.join(timeout=15)
    # And exactly one call got RESOURCE_EXHAUSTED, at once and marked as overload, not queued
    refused = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
    assert sorted(o[0] for o in outcomes) == ["OK"] * limit + ["RESOURCE_EXHAUSTED"], outcomes
    assert refused[0][1] < 0.5 and refused[0][2]["x-ig-error-code"] == "overloaded"
    assert REGISTRY.get_sample_value("mcp_grpc_in_flight") == 0
    # The refused call never reached the core, so it left no evidence
    assert Invocation.objects.filter(run_id=run_id).count() == limit
