"""Authentication shared by every door: operator API keys for the management API here; session
bearer tokens (for runs) are verified by `sessions_app.verify.session_authenticate`."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from maestro import errors
from sessions_app.apikeys import apikey_verify


class ApiKeyAuthentication(authentication.BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def authenticate(self, request):
        key = request.META.get(self.header)
        if key is None:
            return None
        try:
            operator = apikey_verify(key=key.strip())
        except errors.Unauthenticated as exc:
            raise exceptions.AuthenticationFailed(exc.message) from None
        return operator, None

    def authenticate_header(self, request):
        return 'ApiKey realm="maestro-mcp"'
