"""The invoke route served straight from WSGI, in front of Django's handler.

Why: on `POST /api/maestro/v1/runs/{runId}/mcp/invoke` Django's request object, URL resolver and
thirteen middleware cost about 0.45 ms of CPU per call, as much as the invoke core's own work
(measured in-process against the same core, PostgreSQL and Redis on). None of that middleware does
anything for this route: it has no cookies, sessions, CSRF or templates, and the core does its own
authentication.

What is kept, so the route behaves as if Django served it: the same answer (`invoke_answer` is
shared with the Django view), Django's request_started/request_finished signals (database
connections are checked and returned exactly as for any request), host validation, the body
size limit, the security headers, the access-log line and the route span. Anything unusual is
handed to Django untouched: other methods and paths, a request with an `Origin` header (CORS is
django-cors-headers' job), no or a bad Content-Length, a disallowed Host, and DEBUG access logs
(which list headers).
"""

from __future__ import annotations

import json
import logging
import re
import time
from http import HTTPStatus

from django.conf import settings
from django.core import signals
from django.http.request import split_domain_port, validate_host

from maestro import telemetry
from maestro.api_errors import error_body
from mcp.api.invoke_views import invoke_answer

logger = logging.getLogger("maestro.errors")
access_log = logging.getLogger("maestro.access")

_ROUTE = re.compile(r"/api/maestro/v1/runs/([^/]+)/mcp/invoke")
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def _security_headers() -> list[tuple[str, str]]:
    """The headers Django's SecurityMiddleware and XFrameOptionsMiddleware add to a JSON answer."""
    headers = [("X-Content-Type-Options", "nosniff")] if settings.SECURE_CONTENT_TYPE_NOSNIFF else []
    if settings.SECURE_REFERRER_POLICY:
        headers.append(("Referrer-Policy", settings.SECURE_REFERRER_POLICY))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS))
    return headers


class InvokeFastPath:
    def __init__(self, django_app):
        self.django_app = django_app
        self.max_body = settings.MCP_MAX_REQUEST_BYTES
        self.log_requests = settings.LOG_REQUESTS
        self.static_headers = [("Content-Type", "application/json"), *_security_headers()]

    def __call__(self, environ, start_response):
        match = self._claim(environ)
        if match is None:
            return self.django_app(environ, start_response)
        started = time.perf_counter()
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            status, body, headers = self._answer(environ, match.group(1))
        finally:
            signals.request_finished.send(sender=self.__class__)
        payload = json.dumps(body).encode()
        start_response(
            _STATUS_LINES[status],
            [*self.static_headers, ("Content-Length", str(len(payload))), *headers.items()],
        )
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra={
                "method": "POST", "path": environ["PATH_INFO"], "query": environ.get("QUERY_STRING", ""), "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            })
        return [payload]

    def _claim(self, environ):
        if environ.get("REQUEST_METHOD") != "POST" or "HTTP_ORIGIN" in environ:
            return None
        match = _ROUTE.fullmatch(environ.get("PATH_INFO", ""))
        # PATH_INFO is latin-1 decoded bytes; Django re-decodes non-ASCII paths as UTF-8: leave those to it.
        if match is None or not match.group(1).isascii() or access_log.isEnabledFor(logging.DEBUG):
            return None
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit():
            return None
        host = environ.get("HTTP_HOST", "")
        domain, _port = split_domain_port(host)
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            return None
        return match

    def _answer(self, environ, run_id: str) -> tuple[int, dict, dict]:
        length = int(environ["CONTENT_LENGTH"])
        if length > self.max_body:
            return 413, error_body("payload_too_large", "request body is too large"), {}
        try:
            raw = environ["wsgi.input"].read(length) if length else b""
            with telemetry.span("mcp/runs", **{"http.method": "POST", "http.route": "/api/maestro/v1/runs/"}):
                return invoke_answer(
                    run_id=run_id, authorization=environ.get("HTTP_AUTHORIZATION"), raw=raw,
                    content_type=environ.get("CONTENT_TYPE", ""),
                )
        except Exception:
            logger.exception("unhandled error in the invoke fast path")
            return 500, error_body("internal_error", "internal error"), {}
