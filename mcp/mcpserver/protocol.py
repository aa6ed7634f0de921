"""The MCP wire rules the gateway's own endpoint follows as a server: revisions, JSON-RPC messages
and errors, the 2026-07-28 request envelope and its header checks, and what it advertises.

References: the specification revisions themselves (basic/transports, basic/index, versioning,
server/discover, subscriptions, caching, pagination of 2026-07-28; transports and lifecycle of
2025-11-25, 2025-06-18, 2025-03-26). Where the spec leaves a choice, the official SDK 2.3's
server made the same one (the HTTP status for a JSON-RPC error code, the validation ladder).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from mcp.upstream import protocol as P

MODERN = P.MODERN_VERSION  # 2026-07-28: stateless, per-request _meta
SESSION_VERSIONS = P.HANDSHAKE_VERSIONS  # 2025-11-25, 2025-06-18, 2025-03-26: initialize + Mcp-Session-Id
SUPPORTED = (MODERN, *SESSION_VERSIONS)
DEFAULT_SESSION_VERSION = "2025-03-26"  # a session request without MCP-Protocol-Version (spec)

SERVER_INFO = {"name": "maestro-mcp", "title": "Maestro MCP gateway", "version": "1.0"}
INSTRUCTIONS = "Tools, resources and prompts of the MCP servers this Maestro run may use; every call is checked by policy and recorded."
# Only what the gateway serves: list_changed is delivered on the GET stream (2025 revisions) and on
# subscriptions/listen (2026-07-28). No resources/subscribe, completions.
# Logging: upstreams' log messages are relayed at the level the client asks for.
CAPABILITIES: dict = {
    "tools": {"listChanged": True}, "resources": {"listChanged": True}, "prompts": {"listChanged": True}, "logging": {},
}

META_PROTOCOL_VERSION = P.META_PROTOCOL_VERSION
META_CLIENT_CAPABILITIES = P.META_CLIENT_CAPABILITIES
META_SERVER_INFO = P.META_SERVER_INFO
META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
# The gateway's own _meta keys on results (a vendor prefix, as the spec asks).
META_RECEIPT = "io.maestro/receipt"
META_EVIDENCE = "io.maestro/evidence"
META_ERROR = "io.maestro/error"
META_SERVER = "io.maestro/server"

H_PROTOCOL_VERSION = "mcp-protocol-version"
H_SESSION_ID = "mcp-session-id"
H_METHOD = "mcp-method"
H_NAME = "mcp-name"
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

# 2026-07-28: the HTTP status a JSON-RPC error travels with (the SDK's table). Session revisions
# answer JSON-RPC errors with 200, as their servers do, except a body that is not JSON-RPC at all.
MODERN_ERROR_STATUS = {
    PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400, UNSUPPORTED_PROTOCOL_VERSION: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400, METHOD_NOT_FOUND: 404,
}

MAX_ID_CHARS = 256
_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")


class RpcError(Exception):
    """A JSON-RPC error answer. `gateway_code` is the gateway's own error code, when there is one
    (it travels in `error.data.code`)."""

    def __init__(self, code: int, message: str, *, data: Any = None, gateway_code: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        if gateway_code:
            self.data = {**(data or {}), "code": gateway_code}

    def body(self, request_id) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


@dataclass(frozen=True)
class Message:
    """One JSON-RPC message from the client. `kind`: request | notification | response."""

    kind: str
    method: str
    id: Any
    params: dict
    raw: dict


def parse_body(raw: bytes) -> Any:
    """The decoded body, or RpcError(-32700). JSON nested deeper than Python's recursion limit is a
    parse error too, as on invoke."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RpcError(PARSE_ERROR, "Parse error: the body is not valid JSON") from None


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def message_of(decoded: Any) -> Message:
    """A JSON-RPC 2.0 request, notification or response, or RpcError(-32600)."""
    if not isinstance(decoded, dict) or decoded.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "Invalid Request: send one JSON-RPC 2.0 object")
    if "method" not in decoded:
        if "id" in decoded and ("result" in decoded or "error" in decoded):
            return Message("response", "", decoded.get("id"), {}, decoded)
        raise RpcError(INVALID_REQUEST, "Invalid Request: no method")
    method, params = decoded.get("method"), decoded.get("params", {})
    if not isinstance(method, str) or not method or len(method) > 128:
        raise RpcError(INVALID_REQUEST, "Invalid Request: method must be a non-empty string")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: params must be an object")
    if "id" not in decoded:
        return Message("notification", method, None, params, decoded)
    if not _valid_id(decoded["id"]):
        raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string (1-256 characters) or an integer")
    return Message("request", method, decoded["id"], params, decoded)


def decode_header_value(value: str | None) -> str | None:
    """The `=?base64?…?=` sentinel decoded (None when malformed); other values as they are."""
    if value is None:
        return None
    match = _B64_SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode("ascii") != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def modern_envelope_check(message: Message, headers: dict[str, str]) -> dict:
    """The 2026-07-28 ladder (basic/index "Per-request protocol fields", transports "Server
    Validation"), first failure wins: `_meta` carries the protocol version and client capabilities
    (-32602); the MCP-Protocol-Version, Mcp-Method and Mcp-Name headers match the body (-32020);
    the version is one this server speaks (-32022). Returns the request's `_meta`."""
    meta = message.params.get("_meta")
    if not isinstance(meta, dict):
        raise RpcError(INVALID_PARAMS, f"params._meta must be an object carrying {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}")
    missing = [key for key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if key not in meta]
    if missing:
        raise RpcError(INVALID_PARAMS, f"params._meta is missing {', '.join(missing)}")
    version = meta[META_PROTOCOL_VERSION]
    if headers.get(H_PROTOCOL_VERSION) != version:
        raise RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version does not match params._meta's protocol version")
    if headers.get(H_METHOD) != message.method:
        raise RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Method does not match the body's method")
    name_key = NAME_PARAM.get(message.method)
    if name_key is not None:
        body_value = message.params.get(name_key)
        if H_NAME not in headers:
            raise RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Name is required for this method")
        if decode_header_value(headers[H_NAME]) != body_value:
            raise RpcError(HEADER_MISMATCH, f"Header mismatch: Mcp-Name does not match the body's {name_key!r}")
    if not isinstance(version, str):
        raise RpcError(INVALID_PARAMS, "the protocol version in params._meta must be a string")
    if version != MODERN:
        raise unsupported_version(version)
    return meta


def unsupported_version(requested: str) -> RpcError:
    return RpcError(
        UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
        data={"supported": [MODERN, *SESSION_VERSIONS], "requested": requested[:64]},
    )


def initialize_version(requested: Any) -> str:
    """Lifecycle "Version Negotiation": the client's version when this server speaks it as a
    session revision, else the newest session revision (the client then decides)."""
    return requested if requested in SESSION_VERSIONS else SESSION_VERSIONS[0]


def accepts(headers: dict[str, str]) -> tuple[bool, bool]:
    """(accepts JSON, accepts an event stream) from the Accept header; no header accepts both."""
    accept = headers.get("accept")
    if not accept:
        return True, True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    anything = "*/*" in types
    return (anything or "application/json" in types or "application/*" in types), (anything or "text/event-stream" in types or "text/*" in types)


def result_for(version: str, result: dict, *, cacheable: bool = False, ttl_ms: int = 0) -> dict:
    """A result as the revision wants it: 2026-07-28 results carry `resultType`, and the cacheable
    ones `ttlMs` and `cacheScope` (private: every list here is filtered for one session)."""
    if version != MODERN:
        return result
    shaped = {**result, "resultType": result.get("resultType", "complete")}
    if cacheable:
        shaped.setdefault("ttlMs", ttl_ms)
        shaped.setdefault("cacheScope", "private")
    return shaped


def header_safe(value: str) -> bool:
    return bool(_HEADER_SAFE.fullmatch(value))
