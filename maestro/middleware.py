"""One structured access-log line per request; headers only at DEBUG, and always redacted."""

from __future__ import annotations

import logging
import time

from django.conf import settings

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
