"""McpGateway: parse the request and metadata, call the invoke core, render the answer.

Everything that matters (authentication, policy, receipts, evidence, the upstream call, the
invocation counters) happens in mcp.services.invoke, exactly as for the HTTP door. This module
only translates: protobuf and metadata in, protobuf and status (mcp.grpc.status) out. Coroutines
on grpc.aio's event loop, the same loop the core runs on.
"""

from __future__ import annotations

import logging
import math

import grpc
from django.conf import settings
from google.protobuf import json_format, struct_pb2

from maestro import errors
from mcp.grpc import gateway_pb2, gateway_pb2_grpc
from mcp.grpc.status import ERROR_CODE_KEY, RECEIPT_KEY, status_for
from mcp.services.invoke import tool_invoke, tools_for_session
from sessions_app.verify import bearer_token

logger = logging.getLogger("maestro.grpc")

# grpc reports about 9.2e18 seconds left when the client set no deadline.
_NO_DEADLINE = 1e9
_MAX_EXACT_INT = 2**53


class UnrepresentableResult(errors.UpstreamFailed):
    """The tool's result holds a number a protobuf Struct cannot carry (beyond a double's range)."""

    code = "upstream_invalid_result"


def _metadata_token(context) -> str | None:
    return bearer_token(_metadata(context, "authorization"))


def _metadata(context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value
    return None


def deadline_seconds(context, default_ms: int) -> float:
    """Seconds left for this call: the client's deadline, else MCP_GRPC_DEFAULT_DEADLINE_MS."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return default_ms / 1000
    return max(remaining, 0.0)


def _plain(value):
    """Struct numbers are doubles; give tools the whole numbers JSON callers would have sent."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_EXACT_INT:
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def struct_to_dict(message: struct_pb2.Struct) -> dict:
    """The arguments as JSON would carry them; NaN and Infinity (a Struct can hold them, JSON
    cannot) are refused as the HTTP door refuses them."""
    try:
        return _plain(json_format.MessageToDict(message))
    except (ValueError, json_format.Error):
        raise errors.InvalidInput(
            "arguments: numbers must be finite (no NaN or Infinity)", code="invalid_arguments",
        ) from None


def dict_to_struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    try:
        json_format.ParseDict(value if isinstance(value, dict) else {}, message)
    except (json_format.ParseError, ValueError, OverflowError, TypeError):
        raise UnrepresentableResult("the tool's result has a number a protobuf Struct cannot carry (beyond a double's range)") from None
    return message


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


class McpGatewayServicer(gateway_pb2_grpc.McpGatewayServicer):
    def __init__(self, *, default_deadline_ms: int | None = None):
        self.default_deadline_ms = default_deadline_ms or settings.MCP_GRPC_DEFAULT_DEADLINE_MS

    async def Invoke(self, request, context):
        async def call():
            outcome = await tool_invoke(
                token=_metadata_token(context), run_id=request.run_id, server=request.server, tool=request.tool,
                arguments=struct_to_dict(request.arguments) if request.HasField("arguments") else None,
                timeout_ms=request.timeout_ms or None, deadline_s=deadline_seconds(context, self.default_deadline_ms),
                transport="grpc", traceparent=_metadata(context, "traceparent"),
            )
            try:
                result = dict_to_struct(outcome.result)
            except errors.GatewayError as exc:
                raise exc.with_receipt(outcome.receipt) from None
            return outcome, result

        outcome, result = await _call_core(context, call)
        context.set_trailing_metadata(((RECEIPT_KEY, outcome.receipt),))
        return gateway_pb2.InvokeResponse(
            invocation_id=outcome.invocation_id, server=outcome.server, server_id=outcome.server_id, tool=outcome.tool,
            result=result, is_error=outcome.is_error, latency_ms=_finite(outcome.latency_ms),
            evidence_seq=outcome.evidence_seq, evidence_hash=outcome.evidence_hash, receipt=outcome.receipt,
        )

    async def ListTools(self, request, context):
        async def call():
            listed = await tools_for_session(token=_metadata_token(context), run_id=request.run_id)
            return [
                gateway_pb2.Tool(
                    server=t["server"], server_id=t["server_id"], name=t["name"], description=t.get("description") or "",
                    input_schema=dict_to_struct(t.get("inputSchema") or {}),
                )
                for t in listed
            ]

        return gateway_pb2.ListToolsResponse(tools=await _call_core(context, call))


async def _call_core(context, call):
    """Run `call`; a domain error becomes its status, with receipt and error code in trailing
    metadata. Nothing else reaches the client: an unexpected error is INTERNAL with no detail."""
    try:
        return await call()
    except errors.GatewayError as exc:
        failure = exc
    except Exception:
        logger.exception("unhandled error in a gRPC call")
        failure = None
    # abort() raises, so it is called outside the try above, never caught by it.
    if failure is None:
        context.set_trailing_metadata(((ERROR_CODE_KEY, "internal_error"),))
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    trailing = [(ERROR_CODE_KEY, failure.code)]
    if failure.receipt:
        trailing.append((RECEIPT_KEY, failure.receipt))
    context.set_trailing_metadata(tuple(trailing))
    await context.abort(status_for(failure), failure.message)
