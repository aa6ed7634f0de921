"""Scope names, in one place. Operator scopes guard the management API; session scopes are what
a run's token may do. `admin:mcp` implies every operator scope."""

ADMIN = "admin:mcp"
READ = "mcp:read"
SESSIONS = "mcp:sessions"
OPERATOR_SCOPES = frozenset({ADMIN, READ, SESSIONS})

INVOKE = "mcp:invoke"
TOOLS = "mcp:tools"
SESSION_SCOPES = frozenset({INVOKE, TOOLS})
