"""The run-facing HTTP door: invoke and tools, authenticated by the session bearer token.

Plain Django views rather than DRF: this is the hot path, and the core does its own
authentication, so DRF's negotiation, parsers and permission layers would be pure overhead.
Errors still go through maestro.api_errors' one table.
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from maestro import errors
from maestro.api_errors import error_body, status_for
from mcp.services.invoke import tool_invoke, tools_for_session
from sessions_app.services import bearer_token

logger = logging.getLogger("maestro.invoke")
RECEIPT_HEADER = "x-ig-policy-receipt"


def error_headers(exc: errors.GatewayError) -> dict[str, str]:
    headers = {}
    receipt = getattr(exc, "receipt", None)
    if receipt:
        headers[RECEIPT_HEADER] = receipt
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="maestro-mcp"'
    return headers


def error_response(exc: errors.GatewayError) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message, **exc.details), status=status_for(exc), headers=error_headers(exc))


def parse_invoke_body(raw: bytes, content_type: str) -> dict:
    if content_type and not content_type.startswith("application/json"):
        raise errors.InvalidInput("send the body as application/json", code="unsupported_media_type")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.InvalidInput("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise errors.InvalidInput("request body must be a JSON object", code="invalid_json")
    unknown = set(body) - {"server", "tool", "arguments", "timeout_ms"}
    if unknown:
        raise errors.InvalidInput(f"{sorted(unknown)[0]}: unknown field", code="invalid_request")
    return body


def invoke_answer(*, run_id: str, authorization: str | None, raw: bytes, content_type: str) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) for one invoke request: shared by this view and the WSGI
    fast path (mcp.api.invoke_wsgi), so both doors answer byte for byte the same."""
    try:
        body = parse_invoke_body(raw, content_type)
        outcome = tool_invoke(
            token=bearer_token(authorization), run_id=run_id, server=body.get("server"), tool=body.get("tool"),
            arguments=body.get("arguments"), timeout_ms=body.get("timeout_ms"), transport="http",
        )
    except errors.GatewayError as exc:
        return status_for(exc), error_body(exc.code, exc.message, **exc.details), error_headers(exc)
    answer = {
        "invocation_id": outcome.invocation_id, "server": outcome.server, "tool": outcome.tool, "result": outcome.result,
        "latency_ms": outcome.latency_ms, "evidence": {"seq": outcome.evidence_seq, "hash": outcome.evidence_hash},
    }
    return 200, answer, {RECEIPT_HEADER: outcome.receipt}


@csrf_exempt
@require_POST
def invoke(request, run_id: str):
    try:
        raw = request.body
    except RequestDataTooBig:
        return error_response(errors.PayloadTooLarge("request body is too large"))
    status, body, headers = invoke_answer(
        run_id=run_id, authorization=request.META.get("HTTP_AUTHORIZATION"), raw=raw, content_type=request.META.get("CONTENT_TYPE", ""),
    )
    return JsonResponse(body, status=status, headers=headers)


@require_GET
def tools(request, run_id: str):
    try:
        listed = tools_for_session(token=bearer_token(request.META.get("HTTP_AUTHORIZATION")), run_id=run_id)
    except errors.GatewayError as exc:
        return error_response(exc)
    return JsonResponse({"tools": listed, "count": len(listed)})
