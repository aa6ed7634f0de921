"""Typed failures of talking to an upstream MCP server.

Each is a subclass of a `maestro.errors` class, so every door maps it without knowing about MCP:
the HTTP handler answers 502 (`UpstreamFailed`) or 504 (`UpstreamTimeout`) with the `code` below.
Messages name the server and what went wrong; they never carry a header value, and at most a
short, scrubbed excerpt of what the upstream sent.
"""

from __future__ import annotations

from maestro.errors import UpstreamFailed, UpstreamTimeout


class UpstreamUnreachable(UpstreamFailed):
    """Refused, reset, DNS failure: no HTTP answer at all."""

    code = "upstream_unreachable"


class UpstreamTimedOut(UpstreamTimeout):
    code = "upstream_timeout"


class UpstreamHttpError(UpstreamFailed):
    """An HTTP error status without a JSON-RPC error in the body."""

    code = "upstream_http_error"


class UpstreamNotMcp(UpstreamFailed):
    """It answered, but not in MCP: HTML, invalid JSON, not JSON-RPC, the wrong id."""

    code = "upstream_not_mcp"


class UpstreamTooLarge(UpstreamFailed):
    code = "upstream_too_large"


class UpstreamTlsError(UpstreamFailed):
    code = "upstream_tls_error"


class UpstreamProtocolUnsupported(UpstreamFailed):
    """It speaks MCP, but no revision this gateway speaks."""

    code = "upstream_protocol_unsupported"


class UpstreamSessionLost(UpstreamFailed):
    """The upstream dropped the MCP session again right after it was re-initialized."""

    code = "upstream_session_lost"


class UpstreamJsonRpcError(UpstreamFailed):
    code = "upstream_jsonrpc_error"

    def __init__(self, message: str, *, upstream_code: int | None, upstream_message: str, upstream_data=None):
        super().__init__(message, details={"upstream_code": upstream_code, "upstream_message": upstream_message})
        self.upstream_code = upstream_code
        self.upstream_message = upstream_message
        # The error's `data`, for the client's own decisions (e.g. supported versions); never shown.
        self.upstream_data = upstream_data


class SessionGone(Exception):
    """Internal signal: the upstream no longer knows our Mcp-Session-Id (HTTP 404). Never escapes
    `mcp.upstream`: the client re-initializes once, then raises `UpstreamSessionLost`."""


# Codes a health probe reports as "unreachable" (no MCP conversation could start); anything else
# that fails is "unhealthy" (it answered, but wrongly or too slowly).
UNREACHABLE_CODES = frozenset({UpstreamUnreachable.code, UpstreamTlsError.code})
