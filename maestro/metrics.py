"""Every Prometheus metric the gateway records, defined once, each with the small typed function
that records it. The README's "Metrics" table documents them; `MaestroConfig.ready()` imports this
module, so they exist in every process from the start.

Names: the operator one-pager's (`mcp_sessions_total`, `mcp_invocations_total`) and the
OpenTelemetry MCP semantic conventions in Prometheus form (`mcp_server_operation_duration_seconds`,
`mcp_client_operation_duration_seconds`, labels `mcp_method_name`, `gen_ai_tool_name`,
`error_type`, `network_transport`), so dashboards written for those conventions work.

Labels are bounded: never a run or session id, and every free-form value (server, tool, method,
error type) goes through a per-process cap on distinct values, past which it is counted as
`_OTHER` (the conventions' fallback value), so a caller inventing tool names cannot grow the
number of series without limit. In a door (web, gRPC) the values live in the door's multiprocess
files and one scrape sums them over the workers (maestro.prometheus).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

OTHER = "_OTHER"
MAX_LABEL_CHARS = 128

# "This metric SHOULD be specified with ExplicitBucketBoundaries of [0.01, ..., 300]": the
# OpenTelemetry MCP semantic conventions, mcp.server.operation.duration and
# mcp.client.operation.duration (docs/gen-ai/mcp.md in open-telemetry/semantic-conventions).
MCP_OPERATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OPERATION_LABELS = ("mcp_method_name", "gen_ai_tool_name", "error_type", "network_transport")


class _Bounded:
    """At most `limit` distinct values of one label in this process; later newcomers are `_OTHER`."""

    def __init__(self, limit: int):
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        value = value[:MAX_LABEL_CHARS]
        if value in self._seen:
            return value
        with self._lock:
            if value not in self._seen:
                if len(self._seen) >= self._limit:
                    return OTHER
                self._seen.add(value)
        return value


_children: dict[tuple, object] = {}


def _child(metric, *values: str):
    """`metric.labels(*values)`, remembered: prometheus_client validates and locks on every
    lookup, and the hot path records five series per call. Bounded, as the label values are."""
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


server_label = _Bounded(500)
tool_label = _Bounded(2000)
method_label = _Bounded(64)
error_label = _Bounded(256)
transport_label = _Bounded(8)
door_label = _Bounded(8)
engine_label = _Bounded(8)

# --- sessions and invocations (the one-pager's names) ----------------------------------------------

SESSIONS = Counter("mcp_sessions", "Run-scoped MCP sessions, by lifecycle event", ["event"])
INVOCATIONS = Counter("mcp_invocations", "Tool invocations through the gateway (denials count as errors)", ["status", "server"])
INVOCATION_SECONDS = Histogram(
    "mcp_invocation_duration_seconds", "Invocation latency through the gateway, by server", ["server"], buckets=_LATENCY_BUCKETS,
)
POLICY_DECISIONS = Counter("mcp_policy_decisions", "Policy decisions", ["decision", "engine"])
IN_FLIGHT = Gauge(
    "mcp_invocations_in_flight", "Tool invocations being served now, by door", ["transport"], multiprocess_mode="livesum",
)

# --- the OpenTelemetry MCP semantic conventions ---------------------------------------------------

SERVER_OPERATION = Histogram(
    "mcp_server_operation_duration_seconds",
    "MCP requests into the gateway, from receipt until the answer is sent (OpenTelemetry mcp.server.operation.duration)",
    _OPERATION_LABELS, buckets=MCP_OPERATION_BUCKETS,
)
CLIENT_OPERATION = Histogram(
    "mcp_client_operation_duration_seconds",
    "The gateway's MCP requests to upstream servers, from sending until the answer (OpenTelemetry mcp.client.operation.duration)",
    _OPERATION_LABELS, buckets=MCP_OPERATION_BUCKETS,
)

# --- evidence ---------------------------------------------------------------------------------------

EVIDENCE_WRITE_SECONDS = Histogram(
    "mcp_evidence_write_duration_seconds", "Evidence INSERTs (one per group commit), by outcome", ["outcome"], buckets=_WRITE_BUCKETS,
)
EVIDENCE_BATCH_ROWS = Histogram("mcp_evidence_batch_rows", "Evidence rows written by one group-commit INSERT", buckets=_BATCH_BUCKETS)

# --- gRPC door ---------------------------------------------------------------------------------------

GRPC_REQUESTS = Counter("mcp_grpc_requests", "gRPC gateway calls by method and status code", ["method", "code"])
GRPC_LATENCY = Histogram(
    "mcp_grpc_request_duration_seconds", "gRPC gateway call latency, including the upstream tool call", ["method"], buckets=_GRPC_BUCKETS,
)
GRPC_IN_FLIGHT = Gauge("mcp_grpc_in_flight", "gRPC gateway calls being served now, over all workers", multiprocess_mode="livesum")
GRPC_MAX_IN_FLIGHT = Gauge(
    "mcp_grpc_max_in_flight", "MCP_GRPC_MAX_IN_FLIGHT summed over the live workers: calls beyond it get RESOURCE_EXHAUSTED",
    multiprocess_mode="livesum",
)


# --- the functions the code calls -------------------------------------------------------------------


def record_session(*, event: Literal["created", "revoked"], count: int = 1) -> None:
    """`count` sessions were created or newly revoked (a repeated revoke is not one)."""
    SESSIONS.labels(event).inc(count)


def record_invocation(*, status: Literal["success", "error"], server: str, seconds: float) -> None:
    """One invocation attempt ended (any door, denials are errors) after `seconds`; `server` is the
    registered name when it resolved (else what the caller asked for: the label cap bounds it)."""
    server = server_label(server)
    _child(INVOCATIONS, status, server).inc()
    _child(INVOCATION_SECONDS, server).observe(seconds)


def record_policy_decision(*, allow: bool, engine: str) -> None:
    _child(POLICY_DECISIONS, "allow" if allow else "deny", engine_label(engine)).inc()


def record_server_operation(*, method: str, tool: str | None, error_type: str | None, transport: str, seconds: float) -> None:
    """An MCP request into the gateway (HTTP invoke, gRPC, the MCP endpoint) was answered.

    `method`: `tools/call`, `tools/list`, ...; `tool`: the tool name for tools/call; `error_type`:
    None on success, else the gateway's error code (`policy_denied`, `upstream_timeout`, ...) or
    `tool_error` for an `isError` result; `transport`: network.transport, `tcp` for HTTP and gRPC.
    """
    _child(SERVER_OPERATION, method_label(method), tool_label(tool), error_label(error_type), transport_label(transport)).observe(seconds)


def record_client_operation(*, method: str, tool: str | None, error_type: str | None, transport: str, seconds: float) -> None:
    """The gateway's MCP request to an upstream was answered (or failed): same labels as above,
    `error_type` being the upstream error code (`upstream_timeout`, the JSON-RPC code, `tool_error`)."""
    _child(CLIENT_OPERATION, method_label(method), tool_label(tool), error_label(error_type), transport_label(transport)).observe(seconds)


def record_evidence_write(*, seconds: float, rows: int, ok: bool) -> None:
    """One evidence INSERT of `rows` rows (a group commit) took `seconds`; `ok` False: it failed."""
    _child(EVIDENCE_WRITE_SECONDS, "ok" if ok else "error").observe(seconds)
    EVIDENCE_BATCH_ROWS.observe(rows)


@contextmanager
def invocation_in_flight(*, transport: Literal["http", "grpc", "mcp"]) -> Iterator[None]:
    """Counts an invocation as in flight for the duration of the block (async code may use it too)."""
    gauge = _child(IN_FLIGHT, door_label(transport))
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def record_grpc_call(*, method: str, code: str, seconds: float) -> None:
    """A McpGateway RPC ended with status `code` (`OK`, `PERMISSION_DENIED`, ...)."""
    _child(GRPC_REQUESTS, method_label(method), code).inc()
    _child(GRPC_LATENCY, method_label(method)).observe(seconds)
