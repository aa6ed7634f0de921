"""Session metrics, exported on /metrics by django-prometheus (the default registry)."""

from prometheus_client import Counter

SESSIONS_TOTAL = Counter("mcp_sessions", "Run-scoped MCP sessions, by lifecycle event", ["event"])
# Bound once: the label lookup is not free, and these run on every create/revoke.
SESSIONS_CREATED = SESSIONS_TOTAL.labels(event="created")
SESSIONS_REVOKED = SESSIONS_TOTAL.labels(event="revoked")
