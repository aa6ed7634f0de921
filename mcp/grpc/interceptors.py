"""What wraps every McpGateway call, in one place: the in-flight limit, metrics and the access log.
Health and reflection calls pass through untouched.

Why the limit is here and not only grpc's `maximum_concurrent_rpcs`: that option counts every RPC,
health checks included, so a saturated gateway would also fail its health probe and get restarted
for being busy. Here gateway calls beyond MCP_GRPC_MAX_IN_FLIGHT are refused at once
(RESOURCE_EXHAUSTED, never queued), while health and reflection keep answering. One event loop
serves every call of the process, so the count needs no lock.
"""

from __future__ import annotations

import logging
import time

import grpc

from maestro.metrics import record_grpc_call
from mcp.grpc import metrics
from mcp.grpc.status import ERROR_CODE_KEY, OVERLOADED

GATEWAY_PREFIX = "/maestro.mcp.v1.McpGateway/"
access_log = logging.getLogger("maestro.access")


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, *, max_in_flight: int, log_requests: bool = True):
        self.max_in_flight = max_in_flight
        self.log_requests = log_requests
        self.in_flight = 0  # this server's calls (the gauge is per process)
        metrics.GRPC_MAX_IN_FLIGHT.set(max_in_flight)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(GATEWAY_PREFIX) or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(method[len(GATEWAY_PREFIX) :], handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, name: str, behavior):
        async def limited(request, context):
            started = time.perf_counter()
            if self.in_flight >= self.max_in_flight:
                self._record(name, "RESOURCE_EXHAUSTED", started, context)
                context.set_trailing_metadata(((ERROR_CODE_KEY, OVERLOADED),))
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"gateway saturated: {self.max_in_flight} calls in flight (MCP_GRPC_MAX_IN_FLIGHT); retry with backoff",
                )
            self.in_flight += 1
            metrics.GRPC_IN_FLIGHT.inc()
            code = "OK"
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                code = _code_name(context) or "UNKNOWN"
                raise
            except BaseException:
                code = _code_name(context) or "CANCELLED"
                raise
            finally:
                self.in_flight -= 1
                metrics.GRPC_IN_FLIGHT.dec()
                self._record(name, code, started, context)

        return limited

    def _record(self, name: str, code: str, started: float, context) -> None:
        elapsed = time.perf_counter() - started
        record_grpc_call(method=name, code=code, seconds=elapsed)
        if self.log_requests and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "grpc",
                extra={"rpc": name, "grpc_code": code, "peer": context.peer(), "duration_ms": round(elapsed * 1000, 2)},
            )


def _code_name(context) -> str | None:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # some grpcio versions report the number
        return next((status.name for status in grpc.StatusCode if status.value[0] == code), None)
    return None
