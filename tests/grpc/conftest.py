"""Fixtures for the gRPC door: (with tests/conftest.py's SDK `upstream`) the gateway's gRPC
server in this process or as `manage.py run_grpc`, sessions and servers made through the HTTP API
as an operator would, and a real grpc client over loopback.

Every test that the gateway's threads or a subprocess must see rows from uses
django_db(transaction=True): they read through their own connections, outside the test's
transaction.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import grpc
import pytest
from rest_framework.test import APIClient

from mcp.grpc import gateway_pb2, gateway_pb2_grpc
from tests.conftest import make_key
from tests.grpc.certs import make_pki
from tests.support.processes import PYTHON, ROOT, project_env
from tests.support.services import free_port, wait_for_port


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class Operator:
    """The operator's side, over the HTTP API: register servers, open sessions."""

    def __init__(self):
        self.api = APIClient()
        self.api.credentials(HTTP_X_API_KEY=make_key(["admin:mcp"]))

    def register(self, url: str, **fields) -> dict:
        body = {"name": f"up-{uuid.uuid4().hex[:8]}", "url": url, **fields}
        response = self.api.post("/api/maestro/v1/mcp/servers", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    def session(self, run_id: str, scopes=("mcp:invoke",), **fields) -> str:
        body = {"scopes": list(scopes), **fields}
        response = self.api.post(f"/api/maestro/v1/runs/{run_id}/mcp/sessions", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()["token"]


@pytest.fixture
def operator(transactional_db) -> Operator:
    return Operator()


@pytest.fixture
def run_id() -> str:
    # Unique per test: the evidence chain head of a run is remembered in-process.
    return f"run-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def registered(operator, upstream) -> dict:
    return operator.register(upstream.url())


class Client:
    """A real grpc client on a channel; `call` returns (response, trailing metadata) or raises."""

    def __init__(self, channel: grpc.Channel, token: str | None = None):
        self.channel = channel
        self.stub = gateway_pb2_grpc.McpGatewayStub(channel)
        self.token = token

    def _metadata(self, token):
        token = self.token if token is None else token
        return (("authorization", f"Bearer {token}"),) if token else ()

    def invoke(self, run_id: str, server: str, tool: str, arguments: dict | None = None, *, token=None, timeout=10.0, **fields):
        request = gateway_pb2.InvokeRequest(run_id=run_id, server=server, tool=tool, **fields)
        if arguments is not None:
            request.arguments.update(arguments)
        response, call = self.stub.Invoke.with_call(request, timeout=timeout, metadata=self._metadata(token))
        return response, dict(call.trailing_metadata())

    def list_tools(self, run_id: str, *, token=None, timeout=10.0):
        response, call = self.stub.ListTools.with_call(gateway_pb2.ListToolsRequest(run_id=run_id), timeout=timeout, metadata=self._metadata(token))
        return response, dict(call.trailing_metadata())


def rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    """The RpcError `fn` raises (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as caught:
        fn(*args, **kwargs)
    return caught.value


@pytest.fixture
def gateway(transactional_db):
    """Start in-process gateway servers: gateway(max_in_flight=.., default_deadline_ms=..) -> Client.

    The servers run on the bridge's event loop (grpc.aio), the loop the data plane's pools and
    clients of this test process live on, as in a run_grpc worker.
    """
    from maestro import bridge
    from mcp.grpc.server import build_server

    started = []

    def start(*, max_in_flight: int = 8, default_deadline_ms: int = 30_000) -> Client:
        async def make():
            server = build_server(bind="127.0.0.1:0", max_in_flight=max_in_flight, default_deadline_ms=default_deadline_ms)
            await server.start()
            return server

        server = bridge.run(make())
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        started.append((server, channel))
        return Client(channel)

    yield start
    for server, channel in started:
        channel.close()
        bridge.run(server.drain(0))


class GrpcProcess:
    """`python manage.py run_grpc` exactly as deployed, on a free loopback port."""

    def __init__(self, *args: str, **env: str | None):
        self.port = free_port()
        self.args = args
        # One worker unless a test asks for more: the lifecycle tests watch one process's signals and metrics.
        # A metrics folder of its own (a door empties its folder when it starts).
        self.metrics_dir = tempfile.mkdtemp(prefix="maestro-metrics-")
        self.env = project_env(**{
            "MCP_GRPC_BIND": f"127.0.0.1:{self.port}", "MCP_GRPC_WORKERS": "1", "MAESTRO_METRICS_DIR": self.metrics_dir, **env,
        })
        self.process: subprocess.Popen | None = None
        self.output = ""

    def start(self) -> "GrpcProcess":
        self.process = subprocess.Popen(
            [PYTHON, "manage.py", "run_grpc", *self.args], cwd=ROOT, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"run_grpc did not start:\n{self.output}") from None
        return self

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, then wait for the exit; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        self.output += self.process.communicate(timeout=timeout)[0]
        return self.process.returncode

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.output += self.process.communicate(timeout=15)[0]
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.output += self.process.communicate()[0]
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def __enter__(self) -> "GrpcProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def channel_to(port: int, *, credentials: grpc.ChannelCredentials | None = None, host: str = "127.0.0.1", options=()) -> grpc.Channel:
    target = f"{host}:{port}"
    return grpc.secure_channel(target, credentials, options=options) if credentials else grpc.insecure_channel(target, options=options)


def read(path: Path) -> bytes:
    return Path(path).read_bytes()
