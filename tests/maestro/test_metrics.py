"""The metric definitions: the names, labels and buckets dashboards rely on, and the label caps
that keep the number of series bounded whatever callers send."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from maestro import metrics
from maestro.metrics import MCP_OPERATION_BUCKETS, OTHER, _Bounded

OPERATION = {"mcp_method_name": "tools/call", "network_transport": "tcp"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_operation_histograms_follow_the_opentelemetry_mcp_conventions():
    # The buckets the conventions give for mcp.{server,client}.operation.duration
    assert MCP_OPERATION_BUCKETS == (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
    tool = f"tool-{uuid.uuid4().hex[:6]}"
    # When one call succeeds in 30 ms and one fails in 3 s, through the gateway and upstream
    for record in (metrics.record_server_operation, metrics.record_client_operation):
        record(method="tools/call", tool=tool, error_type=None, transport="tcp", seconds=0.03)
        record(method="tools/call", tool=tool, error_type="upstream_timeout", transport="tcp", seconds=3.0)
    # Then each lands in its bucket, under the conventions' label names, success without error_type
    for name in ("mcp_server_operation_duration_seconds", "mcp_client_operation_duration_seconds"):
        ok = {**OPERATION, "gen_ai_tool_name": tool, "error_type": ""}
        failed = {**OPERATION, "gen_ai_tool_name": tool, "error_type": "upstream_timeout"}
        assert sample(f"{name}_bucket", **ok, le="0.02") == 0 and sample(f"{name}_bucket", **ok, le="0.05") == 1
        assert sample(f"{name}_bucket", **failed, le="2.0") == 0 and sample(f"{name}_bucket", **failed, le="5.0") == 1
        assert sample(f"{name}_count", **ok) == sample(f"{name}_count", **failed) == 1


def test_sessions_evidence_and_in_flight_are_recorded_under_their_names():
    created = sample("mcp_sessions_total", event="created")
    metrics.record_session(event="created", count=2)
    assert sample("mcp_sessions_total", event="created") == created + 2
    rows = sample("mcp_evidence_batch_rows_sum")
    metrics.record_evidence_write(seconds=0.004, rows=3, ok=False)
    assert sample("mcp_evidence_batch_rows_sum") == rows + 3
    assert sample("mcp_evidence_write_duration_seconds_bucket", outcome="error", le="0.005") >= 1
    with metrics.invocation_in_flight(transport="mcp"):
        assert sample("mcp_invocations_in_flight", transport="mcp") == 1
    assert sample("mcp_invocations_in_flight", transport="mcp") == 0


def test_a_label_takes_at_most_its_cap_of_distinct_values_then_other():
    cap = _Bounded(2)
    assert [cap("a"), cap("b"), cap("c"), cap("a"), cap(None), cap("")] == ["a", "b", OTHER, "a", "", ""]
    assert cap("b" * 500) == OTHER and len(_Bounded(5)("x" * 500)) == metrics.MAX_LABEL_CHARS


def test_invocations_go_through_the_caps_too():
    # A caller naming a server that does not exist gets no new series of its own past the cap
    long_name = "s" * 300
    metrics.record_invocation(status="error", server=long_name, seconds=0.01)
    assert sample("mcp_invocations_total", status="error", server=long_name[: metrics.MAX_LABEL_CHARS]) >= 1
    assert sample("mcp_invocations_total", status="error", server=long_name) == 0
