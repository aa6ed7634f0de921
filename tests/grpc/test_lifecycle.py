"""`manage.py run_grpc` as a real process: serves the gateway, health and reflection (and its own
metrics) until SIGTERM, drains in-flight calls for a bounded grace period, honours the kill switch."""

import socket
import subprocess
import threading
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mcp.models import Invocation
from tests.grpc.conftest import Client, GrpcProcess, channel_to, rpc_error
from tests.support.metrics import scrape
from tests.support.processes import PYTHON, ROOT
from tests.support.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def check(channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=3).status


def test_run_grpc_serves_calls_health_reflection_and_metrics_until_sigterm(operator, registered, run_id):
    metrics_port = free_port()
    # Given run_grpc started as deployed
    with GrpcProcess(MCP_GRPC_METRICS_BIND=f"127.0.0.1:{metrics_port}") as process:
        channel = channel_to(process.port)
        # Then health answers SERVING for the server and for the gateway service
        assert check(channel) == check(channel, "maestro.mcp.v1.McpGateway") == health_pb2.HealthCheckResponse.SERVING
        # And reflection describes the gateway, so grpcurl-style tools work without the proto
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {"maestro.mcp.v1.McpGateway", "grpc.health.v1.Health"} <= set(database.get_services())
        described = database.FindFileContainingSymbol("maestro.mcp.v1.McpGateway")
        assert [m.name for m in described.service[0].method] == ["Invoke", "ListTools"]
        # And a tool call goes through the real process to the upstream, leaving evidence
        client = Client(channel, operator.session(run_id))
        response, trailing = client.invoke(run_id, registered["name"], "echo", {"text": "via run_grpc"})
        assert response.result["content"][0]["text"] == "via run_grpc" and trailing["x-ig-policy-receipt"]
        assert Invocation.objects.get(run_id=run_id).transport == "grpc"
        # And the process's own metrics show the call and the in-flight gauge
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'mcp_grpc_requests_total{code="OK",method="Invoke"} 1.0' in text
        assert "mcp_grpc_in_flight 0.0" in text and "mcp_grpc_max_in_flight 64.0" in text
        assert 'mcp_invocations_total{server="%s",status="success"} 1.0' % registered["name"] in text
        # When SIGTERM arrives
        code = process.terminate()
    # Then it exits cleanly and says it drained
    assert code == 0, process.output
    assert "grpc draining" in process.output and "grpc stopped" in process.output


def test_sigterm_lets_in_flight_calls_finish_and_refuses_new_ones(operator, registered, run_id):
    with GrpcProcess() as process:
        client = Client(channel_to(process.port), operator.session(run_id))
        outcome = {}

        def slow():
            try:
                outcome["response"] = client.invoke(run_id, registered["name"], "sleep", {"seconds": 1.5}, timeout=10)[0]
            except grpc.RpcError as exc:
                outcome["error"] = exc

        # Given a slow call in flight
        caller = threading.Thread(target=slow)
        caller.start()
        time.sleep(0.5)
        # When SIGTERM arrives
        sent = time.monotonic()
        process.process.send_signal(15)
        time.sleep(0.2)
        # Then a new call is refused (fresh channel: no connection to reuse)
        late = Client(channel_to(process.port), client.token)
        error = rpc_error(late.invoke, run_id, registered["name"], "echo", {"text": "late"}, timeout=2)
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        # And the call in flight completes normally, after which the process exits 0
        caller.join(timeout=10)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["response"].result["content"][0]["text"] == "slept"
        assert process.process.wait(timeout=10) == 0
        assert time.monotonic() - sent < 5


def test_the_drain_is_bounded_by_the_grace_period(operator, registered, run_id):
    # Given a 1 s grace and a call that would take 20 s
    with GrpcProcess("--grace", "1") as process:
        client = Client(channel_to(process.port), operator.session(run_id))
        errors = []

        def very_slow():
            try:
                client.invoke(run_id, registered["name"], "sleep", {"seconds": 20}, timeout=30)
            except grpc.RpcError as exc:
                errors.append(exc)

        caller = threading.Thread(target=very_slow)
        caller.start()
        time.sleep(0.5)
        # When SIGTERM arrives
        sent = time.monotonic()
        process.process.send_signal(15)
        # Then the process is gone soon after the grace period, and the call is ended, not left hanging
        assert process.process.wait(timeout=10) == 0
        assert time.monotonic() - sent < 4
        caller.join(timeout=5)
        assert not caller.is_alive() and errors and errors[0].code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def run_grpc_once(*args: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    process = GrpcProcess(*args, **env)
    return subprocess.run([PYTHON, "manage.py", "run_grpc", *args], cwd=ROOT, env=process.env, capture_output=True, text=True, timeout=timeout)


def test_disabled_mcp_refuses_to_start_with_one_line():
    result = run_grpc_once(MAESTRO_MCP_ENABLED="false")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "MAESTRO_MCP_ENABLED=false" in lines[0]


def test_disabled_mcp_can_idle_for_process_managers_without_serving():
    # Given honcho stops every process when one exits, the Procfile asks run_grpc to idle instead
    process = GrpcProcess("--idle-when-disabled", MAESTRO_MCP_ENABLED="false")
    process.process = subprocess.Popen([PYTHON, "manage.py", "run_grpc", *process.args], cwd=ROOT, env=process.env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # When it has said it is disabled (the line comes once it is idling)
        said = process.process.stdout.readline()
        assert "MAESTRO_MCP_ENABLED=false" in said
        # Then it is still running, yet nothing listens on the gRPC port
        assert process.process.poll() is None
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", process.port), timeout=0.5).close()
        # And it stops on SIGTERM
        assert process.terminate() == 0
    finally:
        process.stop()


def test_a_busy_port_stops_the_start_naming_the_bind_variable():
    # Given something already listens on the port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_grpc_once(MCP_GRPC_BIND=f"127.0.0.1:{port}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "MCP_GRPC_BIND" in lines[0] and str(port) in lines[0]


def test_worker_processes_share_the_port_and_all_stop_on_sigterm(operator, registered, run_id):
    metrics_port = free_port()
    # Given run_grpc with two worker processes and its one metrics endpoint
    with GrpcProcess(MCP_GRPC_WORKERS="2", MCP_GRPC_METRICS_BIND=f"127.0.0.1:{metrics_port}") as process:
        children = subprocess.run(["pgrep", "-P", str(process.process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        # When calls arrive on separate connections
        session = operator.session(run_id)
        for n in range(12):
            channel = channel_to(process.port)
            response, _ = Client(channel, session).invoke(run_id, registered["name"], "echo", {"text": f"call {n}"})
            assert response.result["content"][0]["text"] == f"call {n}"
            channel.close()
        # Then every call is served and recorded, and one scrape (served by the parent, which
        # serves no call itself) adds up both workers' counters and gauges
        assert Invocation.objects.filter(run_id=run_id).count() == 12
        page = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert page.value("mcp_grpc_requests_total", code="OK", method="Invoke") == 12
        assert page.value("mcp_invocations_total", status="success", server=registered["name"]) == 12
        assert page.value("mcp_grpc_max_in_flight") == 2 * 64 and page.value("mcp_grpc_in_flight") == 0
        assert page.value("maestro_door_processes") == 3
        # When SIGTERM arrives, the parent stops both workers and exits cleanly
        code = process.terminate()
    assert code == 0, process.output
    assert process.output.count("grpc stopped") == 2
    assert all(subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0 for pid in children)


def test_a_busy_port_stops_the_workers_start_too():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            [PYTHON, "manage.py", "run_grpc"], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env=__import__("tests.support.processes", fromlist=["project_env"]).project_env(
                MCP_GRPC_BIND=f"127.0.0.1:{port}", MCP_GRPC_WORKERS="2"),
        )
    assert result.returncode == 2
    assert "MCP_GRPC_BIND" in result.stderr and "Traceback" not in result.stderr
