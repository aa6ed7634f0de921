"""One HTTP exchange with an upstream MCP server: send a JSON-RPC message, read the answer as JSON
or as an SSE stream, and turn everything that can go wrong into a typed error.

Budgets: the whole exchange must finish by `deadline` (a `time.monotonic()` value) and read at
most `max_bytes`. Every read waits at most until the deadline (an SSE stream of keep-alives cannot
hold a call past it); a declared Content-Length over the cap is refused before any of the body is
read.

Error messages name the server and what went wrong, never what the upstream's body said: a
registered URL may point somewhere that is not an MCP server, and its answer must not leak back
through a health probe's stored error (the JSON-RPC error text of a real MCP server travels only in
`details.upstream_message`).
"""

from __future__ import annotations

import errno
import inspect
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maestro.logs import scrub_text
from mcp.upstream import errors as E
from mcp.upstream import http11

# The part of an error body worth reading to find a JSON-RPC error in it.
ERROR_BODY_LIMIT = 64 * 1024
EXCERPT_CHARS = 60


@dataclass(frozen=True)
class Reply:
    result: dict | None  # None for an accepted notification (202)
    headers: http11.Headers  # case-insensitive .get()


# Called with every message of an SSE answer that is not the answer itself (progress, logging).
OnMessage = Callable[[dict], Any]


def excerpt(raw: bytes | str) -> str:
    """A short, printable, scrubbed start of what the upstream sent, for error messages."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text[: EXCERPT_CHARS * 4]).split())
    text = scrub_text(text)
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def remaining(deadline: float, label: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise E.UpstreamTimedOut(f"MCP server {label!r} did not answer within its timeout")
    return left


async def post(
    http: http11.Http11Pool,
    *,
    url: str,
    headers: dict[str, str],
    message: dict,
    deadline: float,
    max_bytes: int,
    label: str,
    sent_session: bool = False,
    on_message: OnMessage | None = None,
) -> Reply:
    """POST one JSON-RPC request (or notification, when it has no id) and return its result."""
    remaining(deadline, label)
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    try:
        async with http.stream("POST", url, content=body, headers=headers, deadline=deadline) as response:
            return await _read(
                response, request_id=message.get("id"), deadline=deadline, max_bytes=max_bytes, label=label,
                sent_session=sent_session, on_message=on_message,
            )
    except http11.TransportError as exc:
        raise transport_error(exc, label) from None


async def delete(http: http11.Http11Pool, *, url: str, headers: dict[str, str], timeout_s: float) -> int | None:
    """DELETE an upstream session; best-effort (the upstream forgets idle sessions anyway)."""
    try:
        async with http.stream("DELETE", url, headers=headers, deadline=time.monotonic() + timeout_s) as response:
            return response.status_code  # the body, if any, is not read: nothing in it matters
    except (http11.TransportError, ValueError):
        return None


def transport_error(exc: http11.TransportError, label: str) -> Exception:
    if isinstance(exc, http11.PoolTimeout):
        return E.UpstreamTimedOut(f"no free connection to MCP server {label!r} within its timeout (connection limit reached)")
    if isinstance(exc, http11.TimedOut):
        return E.UpstreamTimedOut(f"MCP server {label!r} did not answer within its timeout")
    if _is_tls(exc):
        return E.UpstreamTlsError(f"TLS with MCP server {label!r} failed: {_tls_reason(exc)}")
    if isinstance(exc, http11.ConnectFailed):
        return E.UpstreamUnreachable(f"cannot connect to MCP server {label!r}: {_connect_reason(exc)}")
    if isinstance(exc, http11.ProtocolError):
        return E.UpstreamUnreachable(f"MCP server {label!r} closed the connection before a complete answer")
    return E.UpstreamUnreachable(f"the connection to MCP server {label!r} failed ({type(exc).__name__})")


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_tls(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError) or "[SSL" in str(e) for e in _causes(exc))


def _tls_reason(exc: BaseException) -> str:
    text = " ".join(str(e) for e in _causes(exc))
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "its certificate is not trusted (certificate verify failed)"
    if "WRONG_VERSION_NUMBER" in text:
        return "it does not speak TLS on this port"
    return "handshake failed"


def _connect_reason(exc: BaseException) -> str:
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name does not resolve"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network unreachable"
    text = " ".join(str(e) for e in _causes(exc)).lower()
    if "name resolution" in text or "name or service not known" in text:
        return "host name does not resolve"
    return "connection failed"


async def _read(
    response: http11.Response, *, request_id, deadline: float, max_bytes: int, label: str, sent_session: bool,
    on_message: OnMessage | None,
) -> Reply:
    status = response.status_code
    if status >= 300:
        raise await _status_error(response, deadline=deadline, label=label, sent_session=sent_session)
    if request_id is None:  # a notification: read the (empty) body so the connection can be reused
        await _read_capped(response, deadline=deadline, max_bytes=ERROR_BODY_LIMIT, label=label, truncate=True)
        return Reply(result=None, headers=response.headers)
    if status == 202 or status == 204:
        raise E.UpstreamNotMcp(f"MCP server {label!r} accepted a request without answering it (HTTP {status})")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise E.UpstreamTooLarge(f"MCP server {label!r} answered {int(declared)} bytes, over the limit of {max_bytes}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream":
        message = await _read_sse(response, request_id=request_id, deadline=deadline, max_bytes=max_bytes, label=label, on_message=on_message)
    elif content_type == "application/json" or content_type.endswith("+json"):
        raw = await _read_capped(response, deadline=deadline, max_bytes=max_bytes, label=label)
        message = _parse_json(raw, label)
    else:
        await _read_capped(response, deadline=deadline, max_bytes=min(max_bytes, ERROR_BODY_LIMIT), label=label, truncate=True)
        shown = excerpt(content_type) if content_type else "no content type"
        raise E.UpstreamNotMcp(f"MCP server {label!r} answered {shown}, not MCP")
    return Reply(result=_result_of(message, request_id, label), headers=response.headers)


async def _read_capped(response: http11.Response, *, deadline: float, max_bytes: int, label: str, truncate: bool = False) -> bytes:
    chunks, size = [], 0
    async for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                chunks.append(chunk)
                break
            raise E.UpstreamTooLarge(f"MCP server {label!r} answered more than the limit of {max_bytes} bytes")
        chunks.append(chunk)
        remaining(deadline, label)
    return b"".join(chunks)


def _parse_json(raw: bytes, label: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise E.UpstreamNotMcp(f"MCP server {label!r} answered invalid JSON") from None


async def _read_sse(response: http11.Response, *, request_id, deadline: float, max_bytes: int, label: str, on_message: OnMessage | None) -> Any:
    """Read events until the answer to `request_id` arrives. Other messages on the same stream
    (progress and logging notifications, server-to-client requests) go to `on_message`, if given."""
    size = 0
    buffer = bytearray()
    data: list[bytes] = []
    async for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise E.UpstreamTooLarge(f"MCP server {label!r} streamed more than the limit of {max_bytes} bytes")
        remaining(deadline, label)
        # Search only the new bytes for line ends: a long event arriving in many chunks stays linear.
        searched = len(buffer)
        buffer += chunk
        start = 0
        while True:
            cut = buffer.find(b"\n", max(start, searched))
            if cut < 0:
                del buffer[:start]
                break
            line, start = bytes(buffer[start:cut]).rstrip(b"\r"), cut + 1
            if line:
                if line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                continue  # comments (keep-alives), id:, event: and retry: lines need no action here
            payload, data = b"\n".join(data).strip(), []
            if not payload:
                continue  # a priming event (id only, empty data) lets a client resume; nothing to read
            message = _parse_json(payload, label)
            if isinstance(message, dict) and ("result" in message or "error" in message) and message.get("id") == request_id:
                return message
            if isinstance(message, dict) and ("result" in message or "error" in message) and message.get("id") is None and "error" in message:
                return message  # an error the server could not tie to a request is still our answer
            if on_message is not None and isinstance(message, dict) and "method" in message:
                outcome = on_message(message)
                if inspect.isawaitable(outcome):
                    await outcome
    raise E.UpstreamNotMcp(f"MCP server {label!r} ended its event stream without answering")


def _result_of(message: Any, request_id, label: str) -> dict:
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise E.UpstreamNotMcp(f"MCP server {label!r} answered JSON that is not JSON-RPC 2.0")
    if "error" in message:
        raise jsonrpc_error(message.get("error"), label)
    if message.get("id") != request_id:
        raise E.UpstreamNotMcp(f"MCP server {label!r} answered a different JSON-RPC request id")
    result = message.get("result")
    if not isinstance(result, dict):
        raise E.UpstreamNotMcp(f"MCP server {label!r} answered a JSON-RPC response without a result object")
    return result


def jsonrpc_error(error: Any, label: str) -> Exception:
    if not isinstance(error, dict):
        return E.UpstreamNotMcp(f"MCP server {label!r} answered a malformed JSON-RPC error")
    code = error.get("code") if isinstance(error.get("code"), int) and not isinstance(error.get("code"), bool) else None
    text = excerpt(str(error.get("message", "")))
    return E.UpstreamJsonRpcError(
        f"MCP server {label!r} answered JSON-RPC error {code}",
        upstream_code=code,
        upstream_message=text,
        upstream_data=error.get("data"),
    )


async def _status_error(response: http11.Response, *, deadline: float, label: str, sent_session: bool) -> Exception:
    status = response.status_code
    try:
        raw = await _read_capped(response, deadline=deadline, max_bytes=ERROR_BODY_LIMIT, label=label, truncate=True)
    except E.UpstreamTimedOut:
        raw = b""
    error = None
    try:
        decoded = json.loads(raw) if raw else None
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error = decoded["error"]
    except (ValueError, RecursionError):
        pass
    # The spec says 404 when a session is gone; some servers (server-everything) say 400 "No valid
    # session ID". Either, on a request that carried a session id, means: start a new session.
    if sent_session and (status == 404 or (status == 400 and error and "session" in str(error.get("message", "")).lower())):
        return E.SessionGone()
    if error is not None:
        return jsonrpc_error(error, label)
    if 300 <= status < 400:
        return E.UpstreamHttpError(f"MCP server {label!r} answered a redirect (HTTP {status}), which the gateway does not follow")
    return E.UpstreamHttpError(f"MCP server {label!r} answered HTTP {status}")
