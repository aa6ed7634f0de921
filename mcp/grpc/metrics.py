"""gRPC-specific metrics. The invoke core counts `mcp_invocations_total` itself (for every door), so
this module adds only what the gRPC door knows: RPCs by method and status, their latency, and how
full the in-flight limit is (the saturation signal of the one-pager's troubleshooting section).
The definitions live with all the others in maestro.metrics.

run_grpc serves one /metrics on MCP_GRPC_METRICS_BIND for all its worker processes (summed by
maestro.prometheus), not the web door's /metrics.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY

from maestro import prometheus
from maestro.metrics import GRPC_IN_FLIGHT, GRPC_LATENCY, GRPC_MAX_IN_FLIGHT, GRPC_REQUESTS  # noqa: F401

logger = logging.getLogger("maestro.grpc")


def serve_metrics(bind: str | None) -> tuple[str, int] | None:
    """Serve the door's /metrics on HOST:PORT (a daemon thread); None: metrics off."""
    address = prometheus.serve_http(bind)
    if address:
        logger.info("grpc metrics on http://%s:%s/metrics", address[0], address[1])
    return address


def in_flight() -> int:
    """This process's calls in flight."""
    return int(REGISTRY.get_sample_value("mcp_grpc_in_flight") or 0)
