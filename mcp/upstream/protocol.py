"""MCP wire vocabulary the client needs, in one place: revisions, envelope keys, header names, and
the two header encodings of the 2026-07-28 revision (the `Mcp-Name` value and `Mcp-Param-*`
mirrors of arguments whose schema says `x-mcp-header`). Values follow the official SDK 2.3
(`mcp_types`, `mcp.shared.inbound`); the SDK itself cannot be imported here (DESIGN section 2).
"""

from __future__ import annotations

import base64
import re
from typing import Any

MODERN_VERSION = "2026-07-28"
# Session-based revisions, newest first: `initialize` offers the first; the server may settle on any.
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")

CLIENT_INFO = {"name": "maestro-mcp", "version": "1.0"}
CLIENT_CAPABILITIES: dict = {}  # the gateway relays calls; it offers no sampling, roots or elicitation

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

H_PROTOCOL_VERSION = "MCP-Protocol-Version"
H_SESSION_ID = "Mcp-Session-Id"
H_METHOD = "Mcp-Method"
H_NAME = "Mcp-Name"
H_PARAM_PREFIX = "Mcp-Param-"
ACCEPT = "application/json, text/event-stream"

# JSON-RPC error codes with a meaning for the client.
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

# Headers the gateway sets itself: an operator's upstream auth headers may not override them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host", "Content-Type", "Content-Length", "Accept", "Accept-Encoding", "Connection", "Transfer-Encoding",
        "Upgrade", "TE", "Trailer", "Keep-Alive", "Expect", "Cookie", H_PROTOCOL_VERSION, H_SESSION_ID, H_METHOD, H_NAME,
        "Last-Event-ID", "traceparent", "tracestate",
    )
)

_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")
_B64_SENTINEL = re.compile(r"^=\?base64\?.*\?=$")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
SESSION_ID_RE = re.compile(r"^[\x21-\x7E]{1,256}$")


def encode_header_value(value: str) -> str:
    """Plain printable ASCII passes as is; anything else travels base64-wrapped (`=?base64?…?=`)."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _B64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def modern_meta(params: dict | None) -> dict:
    """The per-request envelope every 2026-07-28 request carries in `params._meta`. Client
    capabilities already in `_meta` are kept: the MCP endpoint passes on those of the client it
    relays for (so an upstream may ask that client for input, MRTR); otherwise the gateway's own."""
    params = dict(params or {})
    meta = dict(params.get("_meta") or {})
    meta.setdefault(META_CLIENT_CAPABILITIES, CLIENT_CAPABILITIES)
    meta.update({META_PROTOCOL_VERSION: MODERN_VERSION, META_CLIENT_INFO: CLIENT_INFO})
    params["_meta"] = meta
    return params


def param_header_map(input_schema: Any) -> dict[tuple[str, ...], str]:
    """Properties whose schema says `x-mcp-header: Token`, reached through `properties` alone, as
    {path: token}. Anything malformed yields {} (a conforming client then sends no such header)."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), input_schema)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        token = node.get("x-mcp-header")
        if path and token is not None:
            if not isinstance(token, str) or not _TOKEN.fullmatch(token) or node.get("type") not in ("string", "integer", "boolean"):
                return {}
            found[path] = token
        properties = node.get("properties")
        if isinstance(properties, dict):
            stack.extend(((*path, key), sub) for key, sub in properties.items())
    return found


def param_headers(header_map: dict[tuple[str, ...], str], arguments: dict) -> dict[str, str]:
    headers: dict[str, str] = {}
    for path, token in header_map.items():
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            rendered = str(value)
        else:
            continue
        headers[f"{H_PARAM_PREFIX}{token}"] = encode_header_value(rendered)
    return headers
