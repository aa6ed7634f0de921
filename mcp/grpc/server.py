"""Build and run the gRPC server (grpc.aio): in-flight limit, TLS/mTLS, health, reflection, drain.

The gRPC door is a data-plane door: its calls run as coroutines on the process's event loop, on the
same invoke core as the HTTP door (DESIGN section 1), so a call waiting on a slow tool costs no
thread. The in-flight limit is the interceptor's (a saturated gateway still answers its health
probe); grpc's own `maximum_concurrent_rpcs` is the backstop behind it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from maestro import telemetry
from maestro.config import ConfigError
from mcp.grpc import gateway_pb2, gateway_pb2_grpc, metrics
from mcp.grpc.interceptors import GatewayInterceptor
from mcp.grpc.servicer import McpGatewayServicer

logger = logging.getLogger("maestro.grpc")

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["McpGateway"].full_name
# grpc concurrency kept apart from gateway calls for health checks and reflection.
CONTROL_HEADROOM = 4


@dataclass(frozen=True)
class TlsMaterial:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None

    @property
    def mode(self) -> str:
        return "mtls" if self.client_ca else "tls"

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)], root_certificates=self.client_ca, require_client_auth=self.client_ca is not None
        )


def _read(variable: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}={path!r}: cannot read the file ({exc.strerror or exc})") from None


def _certificates(variable: str, path: str, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{variable}={path!r} is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)") from None


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_tls(*, cert: str | None, key: str | None, ca: str | None) -> TlsMaterial | None:
    """Read and check the TLS files now, so a bad file stops the start with one line naming its
    variable instead of failing every handshake later with an opaque SSL error."""
    if not cert or not key:
        return None
    cert_pem = _read("MCP_GRPC_TLS_CERT", cert)
    leaf = _certificates("MCP_GRPC_TLS_CERT", cert, cert_pem)[0]
    key_pem = _read("MCP_GRPC_TLS_KEY", key)
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(f"MCP_GRPC_TLS_KEY={key!r} is encrypted: give the unencrypted PEM private key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"MCP_GRPC_TLS_KEY={key!r} is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)") from None
    if _public_der(private_key.public_key()) != _public_der(leaf.public_key()):
        raise ConfigError(f"MCP_GRPC_TLS_KEY={key!r} does not match the certificate in MCP_GRPC_TLS_CERT={cert!r}")
    if leaf.not_valid_after_utc <= datetime.now(timezone.utc):
        raise ConfigError(f"MCP_GRPC_TLS_CERT={cert!r} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    ca_pem = None
    if ca:
        ca_pem = _read("MCP_GRPC_TLS_CA", ca)
        _certificates("MCP_GRPC_TLS_CA", ca, ca_pem)
    return TlsMaterial(cert_chain=cert_pem, private_key=key_pem, client_ca=ca_pem)


def _check_bindable(bind: str) -> None:
    """Try the address first, so a busy or foreign address is one line naming MCP_GRPC_BIND and
    the reason, rather than grpc's own log noise and a bare failure."""
    host, _, port = bind.rpartition(":")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, ValueError) as exc:
        raise ConfigError(f"MCP_GRPC_BIND={bind!r}: not an address to listen on ({exc})") from None
    with socket.socket(family, kind, proto) as probe:
        # As grpc does: a port left in TIME_WAIT by a previous run is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"MCP_GRPC_BIND={bind!r}: cannot listen there ({exc.strerror or exc})") from None


@dataclass
class GatewayServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    interceptor: GatewayInterceptor

    async def start(self) -> None:
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def drain(self, grace_s: float) -> int:
        """Stop taking calls, tell health checkers, give in-flight calls up to `grace_s` seconds.
        Returns how many were still running when the grace period ended (then cancelled)."""
        await self.health.enter_graceful_shutdown()
        stopping = asyncio.get_running_loop().create_task(self.server.stop(grace_s))
        done, _ = await asyncio.wait({stopping}, timeout=grace_s)
        abandoned = 0 if done else self.interceptor.in_flight
        await stopping
        return abandoned


def build_server(
    *, bind: str, max_in_flight: int, default_deadline_ms: int, tls: TlsMaterial | None = None,
    max_request_bytes: int = 4 * 1024 * 1024, log_requests: bool = True, shared_port: bool = False,
) -> GatewayServer:
    """A grpc.aio server with the gateway, health and reflection, bound but not started. Call it
    on the event loop that will serve it."""
    if not shared_port:
        _check_bindable(bind)
    interceptor = GatewayInterceptor(max_in_flight=max_in_flight, log_requests=log_requests)
    server = grpc.aio.server(
        interceptors=[interceptor],
        # The hard backstop behind the interceptor's limit, with room for health and reflection.
        maximum_concurrent_rpcs=max_in_flight + CONTROL_HEADROOM,
        options=[
            # grpc sets SO_REUSEPORT by default: a second server on the same port would start
            # "fine" and steal half the connections. Off, a busy port is an error at start; on
            # only between the worker processes of one run_grpc (serve_workers checked the port).
            ("grpc.so_reuseport", 1 if shared_port else 0),
            ("grpc.max_receive_message_length", max_request_bytes),
        ],
    )
    gateway_pb2_grpc.add_McpGatewayServicer_to_server(McpGatewayServicer(default_deadline_ms=default_deadline_ms), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(bind, tls.credentials()) if tls else server.add_insecure_port(bind)
    except RuntimeError:
        port = 0
    if not port:
        raise ConfigError(f"MCP_GRPC_BIND={bind!r}: cannot listen there (address in use or not local?)")
    return GatewayServer(server=server, port=port, health=health_servicer, interceptor=interceptor)


def serve(*, bind: str, max_in_flight: int, default_deadline_ms: int, tls: TlsMaterial | None, grace_s: float,
          metrics_bind: str | None = None, max_request_bytes: int = 4 * 1024 * 1024, log_requests: bool = True,
          shared_port: bool = False) -> int:
    """Serve until SIGTERM or SIGINT, then drain for at most `grace_s` seconds. Returns how many
    calls were abandoned (still running after the grace period). One uvloop event loop runs the
    server and the invoke core (DESIGN section 1)."""
    import uvloop

    return uvloop.run(_serve(
        bind=bind, max_in_flight=max_in_flight, default_deadline_ms=default_deadline_ms, tls=tls, grace_s=grace_s,
        metrics_bind=metrics_bind, max_request_bytes=max_request_bytes, log_requests=log_requests, shared_port=shared_port,
    ))


async def _serve(*, grace_s: float, metrics_bind: str | None, **build_options) -> int:
    from mcp.dataplane.lifecycle import data_plane_start, data_plane_stop

    gateway = build_server(**build_options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics.serve_metrics(metrics_bind)
    await data_plane_start()
    await gateway.start()
    logger.info(
        "grpc serving",
        extra={"bind": build_options["bind"], "port": gateway.port, "tls": build_options["tls"].mode if build_options.get("tls") else "off",
               "max_in_flight": build_options["max_in_flight"], "default_deadline_ms": build_options["default_deadline_ms"]},
    )
    await stop.wait()
    logger.info("grpc draining", extra={"grace_s": grace_s, "in_flight": gateway.interceptor.in_flight})
    abandoned = await gateway.drain(grace_s)
    await data_plane_stop()
    logger.info("grpc stopped", extra={"abandoned_calls": abandoned})
    return abandoned


def serve_workers(*, workers: int, **serve_options) -> int:
    """Run `workers` server processes on one port and supervise them; returns the exit status.

    Why processes: one process runs Python on one core at a time (the GIL), so a single gRPC
    process tops out at about one core. Each worker is a complete server (its own event loop,
    in-flight limit, health and drain); the kernel spreads new connections over them
    (SO_REUSEPORT). The parent checks the port first, forks before anything of grpc is created
    (grpc does not survive a fork), forwards SIGTERM and waits.
    """
    _check_bindable(serve_options["bind"])
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_worker, args=(index, serve_options), name=f"grpc-worker-{index}") for index in range(workers)]
    for child in children:
        child.start()
    # One /metrics for all workers, from this process (after the fork: no server thread to copy).
    metrics.serve_metrics(serve_options.get("metrics_bind"))
    stop = wait_for_signal_event()
    while not stop.wait(0.5):
        if any(child.exitcode is not None for child in children):
            logger.error("a grpc worker exited; stopping the others", extra={"exit_codes": [c.exitcode for c in children]})
            break
    for child in children:
        if child.exitcode is None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(serve_options["grace_s"] + 10)
        if child.exitcode is None:
            child.kill()
            child.join()
    return 0 if stop.is_set() and all(child.exitcode == 0 for child in children) else 1


def _worker(index: int, serve_options: dict) -> None:
    serve(**{**serve_options, "metrics_bind": None}, shared_port=True)  # the parent serves /metrics
    telemetry.shutdown()  # os._exit skips the exit hooks that would flush the queued spans
    logging.shutdown()
    # Skip Python's exit: nothing left to wait for, and atexit handlers of the parent do not apply.
    os._exit(0)


def wait_for_signal_event() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (installed from the main thread)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
