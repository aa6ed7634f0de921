"""The run-facing HTTP door: invoke and tools, authenticated by the session bearer token.

Plain Django views rather than DRF: this is the hot path, and the core does its own
authentication, so DRF's negotiation, parsers and permission layers would be pure overhead.
Errors still go through maestro.api_errors' one table.
"""

from __future__ import annotations

import json
import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from maestro import errors
from maestro.api_errors import error_body, status_for
from mcp.services.invoke import tool_invoke, tools_for_session

logger = logging.getLogger("maestro.invoke")
RECEIPT_HEADER = "x-ig-policy-receipt"


def bearer_token(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def error_response(exc: errors.GatewayError) -> JsonResponse:
    response = JsonResponse(error_body(exc.code, exc.message, **exc.details), status=status_for(exc))
    receipt = getattr(exc, "receipt", None)
    if receipt:
        response[RECEIPT_HEADER] = receipt
    if isinstance(exc, errors.Unauthenticated):
        response["WWW-Authenticate"] = 'Bearer realm="maestro-mcp"'
    return response


def _json_body(request) -> dict:
    content_type = request.META.get("CONTENT_TYPE", "")
    if content_type and not content_type.startswith("application/json"):
        raise errors.InvalidInput("send the body as application/json", code="unsupported_media_type")
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidInput("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise errors.InvalidInput("request body must be a JSON object", code="invalid_json")
    unknown = set(body) - {"server", "tool", "arguments", "timeout_ms"}
    if unknown:
        raise errors.InvalidInput(f"{sorted(unknown)[0]}: unknown field", code="invalid_request")
    return body


@csrf_exempt
@require_POST
def invoke(request, run_id: str):
    try:
        body = _json_body(request)
        outcome = tool_invoke(
            token=bearer_token(request), run_id=run_id, server=body.get("server"), tool=body.get("tool"),
            arguments=body.get("arguments"), timeout_ms=body.get("timeout_ms"), transport="http",
        )
    except errors.GatewayError as exc:
        return error_response(exc)
    response = JsonResponse({
        "invocation_id": outcome.invocation_id, "server": outcome.server, "tool": outcome.tool, "result": outcome.result,
        "latency_ms": outcome.latency_ms, "evidence": {"seq": outcome.evidence_seq, "hash": outcome.evidence_hash},
    })
    response[RECEIPT_HEADER] = outcome.receipt
    return response


@require_GET
def tools(request, run_id: str):
    try:
        listed = tools_for_session(token=bearer_token(request), run_id=run_id)
    except errors.GatewayError as exc:
        return error_response(exc)
    return JsonResponse({"tools": listed, "count": len(listed)})
