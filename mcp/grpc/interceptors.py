"""What wraps every McpGateway call, in one place: the in-flight limit, metrics, the access log and
Django's per-request database hygiene. Health and reflection calls pass through untouched.

Why the limit is a semaphore here and not only grpc's `maximum_concurrent_rpcs`: that option counts
every RPC, health checks included, so a saturated gateway would also fail its health probe and
get restarted for being busy. Here gateway calls beyond MCP_GRPC_MAX_IN_FLIGHT are refused at
once (RESOURCE_EXHAUSTED, never queued), while the server keeps a few slots for health and
reflection (see server.py, which still sets `maximum_concurrent_rpcs` as the hard backstop).
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from django.db import close_old_connections

from mcp.grpc import metrics
from mcp.grpc.status import ERROR_CODE_KEY, OVERLOADED

GATEWAY_PREFIX = "/maestro.mcp.v1.McpGateway/"
access_log = logging.getLogger("maestro.access")


class GatewayInterceptor(grpc.ServerInterceptor):
    def __init__(self, *, max_in_flight: int, log_requests: bool = True):
        self.max_in_flight = max_in_flight
        self.log_requests = log_requests
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._count_lock = threading.Lock()
        self.in_flight = 0  # this server's calls (the gauge is per process)
        metrics.GRPC_MAX_IN_FLIGHT.set(max_in_flight)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(GATEWAY_PREFIX) or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(method[len(GATEWAY_PREFIX) :], handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, name: str, behavior):
        def limited(request, context):
            started = time.perf_counter()
            if not self._slots.acquire(blocking=False):
                self._record(name, "RESOURCE_EXHAUSTED", started, context)
                context.set_trailing_metadata(((ERROR_CODE_KEY, OVERLOADED),))
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"gateway saturated: {self.max_in_flight} calls in flight (MCP_GRPC_MAX_IN_FLIGHT); retry with backoff",
                )
            metrics.GRPC_IN_FLIGHT.inc()
            with self._count_lock:
                self.in_flight += 1
            # The pool's threads live long: like Django's request_started/finished, drop connections
            # that are broken or past CONN_MAX_AGE before and after each call.
            close_old_connections()
            try:
                return behavior(request, context)
            finally:
                close_old_connections()
                metrics.GRPC_IN_FLIGHT.dec()
                with self._count_lock:
                    self.in_flight -= 1
                self._slots.release()
                code = context.code()
                self._record(name, code.name if code is not None else "OK", started, context)

        return limited

    def _record(self, name: str, code: str, started: float, context) -> None:
        elapsed = time.perf_counter() - started
        metrics.GRPC_REQUESTS.labels(name, code).inc()
        metrics.GRPC_LATENCY.labels(name).observe(elapsed)
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "grpc",
                extra={"rpc": name, "grpc_code": code, "peer": context.peer(), "duration_ms": round(elapsed * 1000, 2)},
            )
