"""Who may see and do what on the pages: the same `Operator` and scopes as the API
(sessions_app.principals). Signed out: to the sign-in page. Signed in without the scope: 403."""

from __future__ import annotations

import logging
from functools import wraps

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, redirect_to_login
from django.db import DatabaseError
from django.http import JsonResponse
from django.shortcuts import render

from maestro.api_errors import error_body, status_for
from maestro.errors import GatewayError
from sessions_app import scopes as S
from sessions_app.principals import operator_for

logger = logging.getLogger("mcp.pages")


class OperatorLoginForm(AuthenticationForm):
    """Django's sign-in, refusing accounts that hold no operator role (staff, or a group named
    after an operator scope) with a message that says so, rather than a 403 on the next page."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        operator = operator_for(user)
        if operator is None or not operator.has_any_operator_scope():
            raise forms.ValidationError(
                "This account has no operator role: ask an administrator for staff status or a group "
                "named mcp:read, mcp:sessions or admin:mcp.",
                code="no_operator_role",
            )


class SignInView(LoginView):
    template_name = "pages/login.html"
    authentication_form = OperatorLoginForm
    redirect_authenticated_user = True


def operator_page(scope: str | None = None, *, json: bool = False):
    """Guards a page view: any operator scope, or `scope` when given. Domain errors raised by the
    view become an error page (or the API's JSON error for `json` views) with their status; a
    database outage is a 503 page, not a 500."""

    def decorate(view):
        @wraps(view)
        def guarded(request, *args, **kwargs):
            try:
                return _guarded(view, scope, json, request, *args, **kwargs)
            except GatewayError as exc:
                return failure(request, exc.code, exc.message, status_for(exc), json=json)
            except DatabaseError:
                logger.exception("database unavailable while serving %s", request.path)
                if json:
                    return JsonResponse(error_body("database_unavailable", "the database is unavailable; retry shortly"), status=503)
                # A page of its own: the usual header would ask the database who is signed in.
                return render(request, "pages/unavailable.html", status=503)

        return guarded

    return decorate


def _guarded(view, scope, json, request, *args, **kwargs):
    if not request.user.is_authenticated:
        if json:
            return JsonResponse(error_body("unauthenticated", "sign in first"), status=401)
        return redirect_to_login(request.get_full_path())
    operator = operator_for(request.user)
    if operator is None or not operator.has_any_operator_scope():
        return failure(request, "forbidden", "Your account holds no operator role.", 403, json=json)
    if scope is not None and not operator.has_scope(scope):
        return failure(request, "forbidden", f"This needs the scope {scope} or the ADMIN role.", 403, json=json)
    request.operator = operator
    return view(request, *args, **kwargs)


def failure(request, code: str, message: str, status: int, *, json: bool = False):
    if json:
        return JsonResponse(error_body(code, message), status=status)
    return page(request, "pages/error.html", {"code": code, "message": message}, status=status)


def page(request, template: str, context: dict | None = None, *, status: int = 200):
    """Render a page with what every template needs to know about the operator."""
    operator = getattr(request, "operator", None) or operator_for(request.user)
    context = {
        **(context or {}),
        "operator": operator,
        "can_admin": bool(operator and operator.has_scope(S.ADMIN)),
        "can_sessions": bool(operator and operator.has_scope(S.SESSIONS)),
        "is_staff": bool(getattr(request.user, "is_staff", False)),
        "section": "studio" if request.path.startswith("/studio") else "registry",
    }
    return render(request, template, context, status=status)
