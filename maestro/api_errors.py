"""The HTTP door's single mapping from errors to `{"error": {"code", "message"}}` responses."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from maestro import adb, errors

logger = logging.getLogger("maestro.errors")

HTTP_STATUS: dict[type[errors.GatewayError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.RateLimited: 429,
    errors.UpstreamFailed: 502,
    errors.Unavailable: 503,
    errors.UpstreamTimeout: 504,
}


def status_for(exc: errors.GatewayError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(code: str, message: str, **details) -> dict:
    body = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def _first_validation_message(detail, path: str = "") -> tuple[str, str]:
    """DRF validation details are nested; report the first field and message, by path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = key if key != "non_field_errors" else ""
            return _first_validation_message(value, f"{path}.{sub}" if path and sub else (sub or path))
    if isinstance(detail, list) and detail:
        if all(not isinstance(d, (dict, list)) for d in detail):
            return path, str(detail[0])
        for index, value in enumerate(detail):
            if value:
                return _first_validation_message(value, f"{path}[{index}]")
    return path, str(detail)


def gateway_error_response(exc: errors.GatewayError, headers: dict | None = None) -> Response:
    return Response(error_body(exc.code, exc.message, **exc.details), status=status_for(exc), headers=headers)


def exception_handler(exc, context):
    if isinstance(exc, errors.GatewayError):
        return gateway_error_response(exc, headers=getattr(exc, "headers", None))
    if isinstance(exc, drf.ValidationError):
        field, message = _first_validation_message(exc.detail)
        text = f"{field}: {message}" if field else message
        return Response(error_body("invalid_request", text, field=field) if field else error_body("invalid_request", text), status=400)
    if isinstance(exc, drf.ParseError):
        return Response(error_body("invalid_json", "request body is not valid JSON"), status=400)
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        code = getattr(exc, "default_code", "unauthenticated")
        code = "unauthenticated" if code in ("not_authenticated", "authentication_failed") else code
        response = Response(error_body(code, str(exc.detail)), status=401)
        response["WWW-Authenticate"] = 'ApiKey realm="maestro-mcp", Bearer realm="maestro-mcp"'
        return response
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return Response(error_body("forbidden", str(getattr(exc, "detail", "permission denied"))), status=403)
    if isinstance(exc, (drf.NotFound, Http404)):
        return Response(error_body("not_found", "not found"), status=404)
    if isinstance(exc, drf.MethodNotAllowed):
        return Response(error_body("method_not_allowed", str(exc.detail)), status=405)
    if isinstance(exc, drf.UnsupportedMediaType):
        return Response(error_body("unsupported_media_type", "send the body as application/json"), status=415)
    if isinstance(exc, drf.NotAcceptable):
        return Response(error_body("not_acceptable", str(exc.detail)), status=406)
    if isinstance(exc, drf.Throttled):
        return Response(error_body("rate_limited", str(exc.detail)), status=429)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "request body is too large"), status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("bad_request", "bad request"), status=400)
    if isinstance(exc, drf.APIException):
        return Response(error_body(getattr(exc, "default_code", "error"), str(exc.detail)), status=exc.status_code)
    if isinstance(exc, (OperationalError, InterfaceError)):  # PostgreSQL down or restarting: retry, not a bug
        return gateway_error_response(adb.DatabaseUnavailable())
    logger.exception("unhandled error in %s", type(context.get("view")).__name__ if context else "view")
    return Response(error_body("internal_error", "internal error"), status=500)


# Django-level handlers, for what never reaches a DRF view (unknown URLs, a 500 in middleware).
def json_404(request, exception=None):
    return JsonResponse(error_body("not_found", "not found"), status=404)


def json_400(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body("payload_too_large", "request body is too large"), status=413)
    return JsonResponse(error_body("bad_request", "bad request"), status=400)


def json_403(request, exception=None):
    return JsonResponse(error_body("forbidden", "permission denied"), status=403)


def json_500(request):
    return JsonResponse(error_body("internal_error", "internal error"), status=500)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: the one error shape instead of Django's HTML page."""
    return JsonResponse(error_body("csrf_failed", "CSRF verification failed: send an API key, or the CSRF token with a login session"), status=403)


def json_methods(*methods: str):
    """Like Django's require_http_methods, for stateless JSON endpoints: another method is a 405 in
    the one error shape (with Allow), and no CSRF check runs first (nothing here uses a cookie)."""
    from functools import wraps

    from django.views.decorators.csrf import csrf_exempt

    allowed = sorted({*methods, "HEAD"} if "GET" in methods else set(methods))

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                response = JsonResponse(error_body("method_not_allowed", f"method {request.method} is not allowed here"), status=405)
                response["Allow"] = ", ".join(allowed)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
