"""HTTP on ASGI for the data-plane routes: read a bounded body, answer JSON, log the access line.

Kept so that a data-plane route behaves as if Django had served it: the host check (a request for
another Host is left to Django, which refuses it), the body size limit, the security headers
Django's middleware adds, CORS for the origins in CORS_ORIGIN (preflights are left to Django's
CORS middleware), the one error shape and the one JSON access-log line per request.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from maestro import errors
from maestro.api_errors import error_body, status_for
from maestro.jsonstrict import json_loads_strict

access_log = logging.getLogger("maestro.access")
logger = logging.getLogger("maestro.errors")

RECEIPT_HEADER = "x-ig-policy-receipt"
API_KEY_CHALLENGE = 'ApiKey realm="maestro-mcp", Bearer realm="maestro-mcp"'
BEARER_CHALLENGE = 'Bearer realm="maestro-mcp"'


def _security_headers() -> list[tuple[bytes, bytes]]:
    """The headers Django's SecurityMiddleware and XFrameOptionsMiddleware add to a JSON answer."""
    headers = [(b"x-content-type-options", b"nosniff")] if settings.SECURE_CONTENT_TYPE_NOSNIFF else []
    if settings.SECURE_REFERRER_POLICY:
        headers.append((b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode()))
    return headers


@dataclass
class Request:
    scope: dict
    receive: object
    method: str
    path: str
    headers: dict[str, str]
    started: float = field(default_factory=time.perf_counter)
    status: int = 0  # the status answered, once it is

    @classmethod
    def of(cls, scope: dict, receive) -> Request:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        return cls(scope=scope, receive=receive, method=scope["method"], path=scope["path"], headers=headers)

    def host_allowed(self) -> bool:
        domain, _port = split_domain_port(self.headers.get("host", ""))
        return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)

    async def body(self) -> bytes:
        """The whole body, Content-Length or chunked alike, or PayloadTooLarge past the limit
        (refused before reading when the declared length is already too large)."""
        limit = settings.MCP_MAX_REQUEST_BYTES
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise errors.PayloadTooLarge("request body is too large")
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.PayloadTooLarge("request body is too large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before its request was read: nothing to answer."""


def parse_json_object(raw: bytes, content_type: str, *, strict: bool = False) -> dict:
    """The body as a JSON object. `strict`: the operator API's rules (depth, NaN, NUL, surrogates:
    maestro.jsonstrict); otherwise any JSON, and the core refuses what has no canonical form with
    its own, more precise codes (invalid_arguments, invalid_tool, ...)."""
    if content_type and not content_type.split(";")[0].strip().lower() == "application/json":
        raise errors.InvalidInput("send the body as application/json", code="unsupported_media_type")
    if strict:
        body = json_loads_strict(raw or b"{}", max_depth=settings.MCP_MAX_JSON_DEPTH)
    else:
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise errors.InvalidInput("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise errors.InvalidInput("request body must be a JSON object", code="invalid_json")
    return body


class Responder:
    def __init__(self) -> None:
        self.log_requests = settings.LOG_REQUESTS
        self.static_headers = [(b"content-type", b"application/json"), *_security_headers()]
        self.cors_origins = frozenset(settings.CORS_ALLOWED_ORIGINS)

    async def json(self, send, request: Request, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, allow_nan=False).encode()  # as Django's JsonResponse writes it
        extra = [(name.encode(), value.encode("latin-1")) for name, value in (headers or {}).items()] + self._cors(request)
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [*self.static_headers, (b"content-length", str(len(payload)).encode()), *extra],
        })
        await send({"type": "http.response.body", "body": payload})
        self.log(request, status)

    def _cors(self, request: Request) -> list[tuple[bytes, bytes]]:
        origin = request.headers.get("origin")
        if origin is not None and origin in self.cors_origins:
            return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"origin")]
        return []

    async def stream_start(self, send, request: Request, headers: dict[str, str] | None = None) -> None:
        """Start a `text/event-stream` answer (the MCP endpoint's SSE); the body follows in
        `stream_write` calls and ends with `stream_end`, which logs the access line."""
        extra = [(name.encode(), value.encode("latin-1")) for name, value in (headers or {}).items()]
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"), (b"x-accel-buffering", b"no"),
                *self.static_headers[1:], *self._cors(request), *extra,
            ],
        })

    @staticmethod
    async def stream_write(send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def stream_end(self, send, request: Request) -> None:
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            pass  # the client has gone: nothing left to end
        self.log(request, 200)

    async def empty(self, send, request: Request, status: int, headers: dict[str, str] | None = None) -> None:
        """An answer without a body (202 Accepted, 204)."""
        extra = [(name.encode(), value.encode("latin-1")) for name, value in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": [*self.static_headers[1:], *self._cors(request), *extra]})
        await send({"type": "http.response.body", "body": b""})
        self.log(request, status)

    async def error(self, send, request: Request, exc: errors.GatewayError, *, challenge: str = BEARER_CHALLENGE) -> None:
        headers = {}
        if exc.receipt:
            headers[RECEIPT_HEADER] = exc.receipt
        if isinstance(exc, errors.Unauthenticated):
            headers["www-authenticate"] = challenge
        await self.json(send, request, status_for(exc), error_body(exc.code, exc.message, **exc.details), headers)

    async def crash(self, send, request: Request) -> None:
        logger.exception("unhandled error in the data plane", extra={"path": request.path[:200]})
        await self.json(send, request, 500, error_body("internal_error", "internal error"))

    def log(self, request: Request, status: int) -> None:
        request.status = status
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra={
                "method": request.method, "path": request.path, "query": request.scope.get("query_string", b"").decode("latin-1"),
                "status": status, "duration_ms": round((time.perf_counter() - request.started) * 1000, 2),
            })
