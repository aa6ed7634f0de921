"""gRPC-specific metrics. The invoke core counts `mcp_invocations_total` itself (for every door), so
this module adds only what the gRPC door knows: RPCs by method and status, their latency, and how
full the in-flight limit is (the saturation signal of the one-pager's troubleshooting section).

The gRPC server is its own process, so its counters are served by that process on
MCP_GRPC_METRICS_BIND (see `serve_metrics`), not by the web door's /metrics.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger("maestro.grpc")

GRPC_REQUESTS = Counter("mcp_grpc_requests", "gRPC gateway calls by method and status code", ["method", "code"])
GRPC_LATENCY = Histogram(
    "mcp_grpc_request_duration_seconds",
    "gRPC gateway call latency, including the upstream tool call",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
GRPC_IN_FLIGHT = Gauge("mcp_grpc_in_flight", "gRPC gateway calls being served now")
GRPC_MAX_IN_FLIGHT = Gauge("mcp_grpc_max_in_flight", "MCP_GRPC_MAX_IN_FLIGHT: calls beyond it get RESOURCE_EXHAUSTED")


def serve_metrics(bind: str | None) -> tuple[str, int] | None:
    """Start prometheus_client's HTTP server on HOST:PORT (a daemon thread); None: metrics off."""
    if not bind:
        return None
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    server, _thread = start_http_server(int(port), addr=host)
    address = server.server_address[:2]
    logger.info("grpc metrics on http://%s:%s/metrics", address[0], address[1])
    return address


def in_flight() -> int:
    return int(REGISTRY.get_sample_value("mcp_grpc_in_flight") or 0)
