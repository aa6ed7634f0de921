"""One structured access-log line per request; headers only at DEBUG, and always redacted."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import JsonResponse

logger = logging.getLogger("maestro.access")


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = settings.LOG_REQUESTS

    def __call__(self, request):
        if not self.enabled:
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        if logger.isEnabledFor(logging.INFO):
            extra = {
                "method": request.method,
                "path": request.path,
                "query": request.META.get("QUERY_STRING", ""),
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            if logger.isEnabledFor(logging.DEBUG):
                extra["request_headers"] = dict(request.headers)
                extra["response_headers"] = dict(response.items())
            logger.info("request", extra=extra)
        return response


class NulGuardMiddleware:
    """A URL with a NUL character (`%00`) is a 400 before any view runs: PostgreSQL text cannot hold
    NUL, so a path or query value carrying one would otherwise fail inside a query (a 500), and no
    route or parameter of this API has a use for it. One rule for every route and parameter."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            from maestro.api_errors import error_body

            return JsonResponse(error_body("invalid_request", "the URL holds a NUL character (%00)"), status=400)
        return self.get_response(request)
