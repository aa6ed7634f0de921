"""Invocation metrics (names from the operator one-pager)."""

from prometheus_client import Counter, Histogram

INVOCATIONS = Counter("mcp_invocations", "Tool invocations through the gateway", ["status", "server"])
INVOCATION_SECONDS = Histogram(
    "mcp_invocation_duration_seconds", "Invocation latency through the gateway, by server", ["server"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
POLICY_DECISIONS = Counter("mcp_policy_decisions", "Policy decisions", ["decision", "engine"])
