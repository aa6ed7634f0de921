"""Operator permissions, defined once. Views name the scope they need; nothing else checks roles."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from sessions_app import scopes as S
from sessions_app.principals import operator_for


NO_OPERATOR = "an operator API key or a staff login is required"


def operator_refusal(operator, *, scope: str | None = None) -> str | None:
    """Why `operator` may not do what needs `scope` (None: any operator scope will do), or None
    when it may. The DRF permissions below and the data plane's own doors both ask this."""
    if operator is None:
        return NO_OPERATOR
    if not operator.has_any_operator_scope():
        return "this API key holds no operator scope"
    if scope is not None and not operator.has_scope(scope):
        return f"requires scope {scope!r} or the ADMIN role"
    return None


class IsOperator(BasePermission):
    """Any operator scope (or the ADMIN role)."""

    message = NO_OPERATOR

    def has_permission(self, request, view) -> bool:
        refusal = operator_refusal(operator_for(request.user))
        if refusal is not None:
            self.message = refusal
        return refusal is None


def require_scope(scope: str) -> type[BasePermission]:
    class RequiresScope(BasePermission):
        message = f"requires scope {scope!r} or the ADMIN role"

        def has_permission(self, request, view) -> bool:
            operator = operator_for(request.user)
            return operator is not None and operator.has_scope(scope)

    RequiresScope.__name__ = f"Requires_{scope.replace(':', '_')}"
    return RequiresScope


RequireAdmin = require_scope(S.ADMIN)
RequireSessions = require_scope(S.SESSIONS)


class ReadOrAdmin(BasePermission):
    """Reads need any operator scope; writes need `admin:mcp` (the registry's rule)."""

    message = "writes require scope 'admin:mcp' or the ADMIN role"

    def has_permission(self, request, view) -> bool:
        operator = operator_for(request.user)
        if operator is None:
            return False
        if request.method in SAFE_METHODS:
            return operator.has_any_operator_scope()
        return operator.has_scope(S.ADMIN)
