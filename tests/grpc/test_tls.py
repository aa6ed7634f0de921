"""TLS and mTLS on `manage.py run_grpc` with certificates made in the test, and the start refused,
in one line naming the variable, when a TLS file is unreadable, not PEM or does not match."""

import os
import shutil
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mcp.models import Invocation
from tests.grpc.certs import Authority
from tests.grpc.conftest import Client, GrpcProcess, channel_to, read
from tests.support.processes import PYTHON, ROOT

SERVING = health_pb2.HealthCheckResponse.SERVING


def health(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3).status


def refused(channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        health(channel)
    return caught.value.code()


def trusting(pki, ca=None, client=None) -> grpc.ChannelCredentials:
    kwargs = {"root_certificates": (ca or pki.ca).pem}
    if client is not None:
        kwargs.update(private_key=client.key, certificate_chain=client.cert)
    return grpc.ssl_channel_credentials(**kwargs)


@pytest.fixture(scope="module")
def tls_server(pki, django_db_setup):
    with GrpcProcess(MCP_GRPC_TLS_CERT=str(pki.server.cert_path), MCP_GRPC_TLS_KEY=str(pki.server.key_path)) as process:
        yield process


@pytest.fixture(scope="module")
def mtls_server(pki, django_db_setup):
    env = dict(MCP_GRPC_TLS_CERT=str(pki.server.cert_path), MCP_GRPC_TLS_KEY=str(pki.server.key_path), MCP_GRPC_TLS_CA=str(pki.ca.path))
    with GrpcProcess(**env) as process:
        yield process


# --- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_ca_is_served_over_tls(tls_server, pki, host):
    assert health(channel_to(tls_server.port, credentials=trusting(pki), host=host)) == SERVING


def test_a_plaintext_client_fails_against_tls(tls_server):
    assert refused(channel_to(tls_server.port)) is grpc.StatusCode.UNAVAILABLE


def test_a_client_trusting_another_ca_fails(tls_server, pki):
    assert refused(channel_to(tls_server.port, credentials=trusting(pki, ca=pki.other_ca))) is grpc.StatusCode.UNAVAILABLE


def test_a_server_name_mismatch_fails(tls_server, pki):
    # Given a client that expects another name than the certificate's 127.0.0.1 / localhost
    options = (("grpc.ssl_target_name_override", "gateway.elsewhere.example"),)
    channel = channel_to(tls_server.port, credentials=trusting(pki), options=options)
    assert refused(channel) is grpc.StatusCode.UNAVAILABLE


# --- mTLS --------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_mtls_with_a_client_certificate_serves_tool_calls(mtls_server, pki, operator, registered, run_id):
    channel = channel_to(mtls_server.port, credentials=trusting(pki, client=pki.client))
    client = Client(channel, operator.session(run_id))
    response, trailing = client.invoke(run_id, registered["name"], "echo", {"text": "mutual"})
    assert response.result["content"][0]["text"] == "mutual" and trailing["x-ig-policy-receipt"] == response.receipt
    assert Invocation.objects.get(run_id=run_id).transport == "grpc"


def test_mtls_without_a_client_certificate_fails(mtls_server, pki):
    assert refused(channel_to(mtls_server.port, credentials=trusting(pki))) is grpc.StatusCode.UNAVAILABLE


def test_mtls_with_a_certificate_from_another_ca_fails(mtls_server, pki):
    channel = channel_to(mtls_server.port, credentials=trusting(pki, client=pki.other_client))
    assert refused(channel) is grpc.StatusCode.UNAVAILABLE


# --- bad files stop the start --------------------------------------------------------------------


def start_failure(env: dict, *, unprivileged: bool = False) -> str:
    """run_grpc's one stderr line when it refuses to start (the test fails if it starts)."""
    process = GrpcProcess(**env)
    command = [PYTHON, "manage.py", "run_grpc"]
    if unprivileged and os.geteuid() == 0:
        # root reads any file; without these capabilities a mode-000 file is unreadable to it too
        command = [shutil.which("setpriv"), "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, cwd=ROOT, env=process.env, capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def files(pki, tmp_path):
    def write(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    return write


def test_a_certificate_that_is_not_pem_stops_the_start(pki, files):
    line = start_failure({"MCP_GRPC_TLS_CERT": files("cert.pem", b"hello"), "MCP_GRPC_TLS_KEY": str(pki.server.key_path)})
    assert "MCP_GRPC_TLS_CERT" in line and "not a PEM certificate" in line


def test_a_key_that_is_not_pem_stops_the_start(pki, files):
    line = start_failure({"MCP_GRPC_TLS_CERT": str(pki.server.cert_path), "MCP_GRPC_TLS_KEY": files("key.pem", read(pki.server.cert_path))})
    assert "MCP_GRPC_TLS_KEY" in line and "not a PEM private key" in line


def test_a_key_of_another_certificate_stops_the_start(pki):
    line = start_failure({"MCP_GRPC_TLS_CERT": str(pki.server.cert_path), "MCP_GRPC_TLS_KEY": str(pki.client.key_path)})
    assert "MCP_GRPC_TLS_KEY" in line and "does not match" in line and "MCP_GRPC_TLS_CERT" in line


def test_a_client_ca_that_is_not_pem_stops_the_start(pki, files):
    env = {"MCP_GRPC_TLS_CERT": str(pki.server.cert_path), "MCP_GRPC_TLS_KEY": str(pki.server.key_path),
           "MCP_GRPC_TLS_CA": files("ca.pem", b"-----BEGIN NONSENSE-----")}
    line = start_failure(env)
    assert "MCP_GRPC_TLS_CA" in line and "not a PEM certificate" in line


def test_an_unreadable_key_stops_the_start(pki, files):
    key = files("secret.key", read(pki.server.key_path))
    os.chmod(key, 0)
    line = start_failure({"MCP_GRPC_TLS_CERT": str(pki.server.cert_path), "MCP_GRPC_TLS_KEY": key}, unprivileged=True)
    assert "MCP_GRPC_TLS_KEY" in line and "cannot read" in line


def test_an_expired_certificate_stops_the_start(pki, tmp_path):
    expired = Authority(tmp_path, "old").issue("expired-server", server=True, hosts=("127.0.0.1",), days=-1)
    line = start_failure({"MCP_GRPC_TLS_CERT": str(expired.cert_path), "MCP_GRPC_TLS_KEY": str(expired.key_path)})
    assert "MCP_GRPC_TLS_CERT" in line and "expired" in line

