"""The sessions API: thin DRF views over `sessions_app.services` / `selectors`.

Reading a run's sessions needs any operator scope; creating and revoking need `mcp:sessions`
(or `admin:mcp`, or a staff login). Errors are raised, and rendered by maestro.api_errors.
"""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from maestro import bridge
from maestro.pagination import BoundedLimitOffsetPagination, page_openapi_parameters, page_schema
from sessions_app import selectors, services
from sessions_app.permissions import IsOperator, RequireSessions
from sessions_app.principals import operator_for
from sessions_app.runs import run_id_openapi_parameter


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def session_created_json(record: selectors.SessionRecord, token: str) -> dict:
    """The answer to a session creation, the only time its token is ever shown."""
    return {
        "sid": record.sid,
        "token": token,
        "token_type": "Bearer",
        "run_id": record.run_id,
        "scopes": list(record.scopes),
        "servers": list(record.servers),
        "issued_at": _iso(record.issued_at),
        "expires_at": _iso(record.expires_at),
    }


def session_json(record: selectors.SessionRecord, now: datetime) -> dict:
    """A session as the API shows it: never its token (the gateway does not keep it)."""
    return {
        "sid": record.sid,
        "run_id": record.run_id,
        "scopes": list(record.scopes),
        "servers": list(record.servers),
        "status": record.status(now),
        "issued_at": _iso(record.issued_at),
        "expires_at": _iso(record.expires_at),
        "revoked_at": _iso(record.revoked_at),
        "created_by": record.created_by,
    }


_STRINGS = {"type": "array", "items": {"type": "string"}}
_TIME = {"type": "string", "format": "date-time"}
SESSION_SCHEMA = {
    "type": "object",
    "properties": {
        "sid": {"type": "string"}, "run_id": {"type": "string"}, "scopes": _STRINGS, "servers": _STRINGS,
        "status": {"type": "string", "enum": ["active", "expired", "revoked"]}, "issued_at": _TIME, "expires_at": _TIME,
        "revoked_at": {**_TIME, "nullable": True}, "created_by": {"type": "string"},
    },
    "required": ["sid", "run_id", "scopes", "servers", "status", "issued_at", "expires_at", "revoked_at"],
}
SESSION_CREATE_REQUEST = {
    "type": "object",
    "properties": {
        "scopes": {"type": "array", "items": {"type": "string", "maxLength": 64}, "minItems": 1, "maxItems": services.MAX_SCOPES},
        "servers": {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": services.MAX_SERVERS,
                    "description": "server ids or names; empty or absent: any server"},
        "ttl_seconds": {"type": "integer", "minimum": 1, "description": "at most SESSION_TTL_SECONDS (also the default)"},
    },
    "required": ["scopes"],
    "additionalProperties": False,
}
SESSION_CREATED_SCHEMA = {
    "type": "object",
    "properties": {
        "sid": {"type": "string"}, "token": {"type": "string", "description": "shown once; the gateway never stores it"},
        "token_type": {"type": "string", "enum": ["Bearer"]}, "run_id": {"type": "string"}, "scopes": _STRINGS,
        "servers": {**_STRINGS, "description": "server ids; empty: any server"}, "issued_at": _TIME, "expires_at": _TIME,
    },
    "required": ["sid", "token", "token_type", "run_id", "scopes", "servers", "issued_at", "expires_at"],
}


class RunSessionsView(APIView):
    """POST: open a session for the run; GET: list the run's sessions; DELETE: revoke them all."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsOperator()]
        return [IsOperator(), RequireSessions()]

    @extend_schema(operation_id="run_sessions_create", tags=["sessions"], summary="Open a session for the run (the token is shown once)",
                   request={"application/json": SESSION_CREATE_REQUEST}, responses={201: SESSION_CREATED_SCHEMA}, parameters=[run_id_openapi_parameter()])
    def post(self, request, run_id: str):
        # API-key callers are answered by the data plane (mcp.dataplane); a browser session with
        # the browsable form lands here, on the same service.
        fields = services.session_request_parse(request.data)
        record, token = bridge.run(services.session_create(run_id=run_id, created_by=operator_for(request.user).name, **fields))
        return Response(session_created_json(record, token), status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(operation_id="run_sessions_list", tags=["sessions"], summary="The run's sessions (never their tokens)",
                   parameters=[run_id_openapi_parameter(), *page_openapi_parameters(BoundedLimitOffsetPagination())], responses={200: page_schema(SESSION_SCHEMA)})
    def get(self, request, run_id: str):
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.session_list(run_id=run_id), request, view=self)
        now = datetime.now(tz=UTC)
        return paginator.get_paginated_response([session_json(r, now) for r in page])

    @extend_schema(operation_id="run_sessions_revoke_all", tags=["sessions"], summary="Revoke every session of the run", responses={204: None},
                   parameters=[run_id_openapi_parameter()])
    def delete(self, request, run_id: str):
        services.session_revoke_run(run_id=run_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunSessionView(APIView):
    """DELETE: revoke one session (idempotent)."""

    permission_classes = [IsOperator, RequireSessions]

    @extend_schema(operation_id="run_session_revoke", tags=["sessions"], summary="Revoke one session (idempotent)", responses={204: None},
                   parameters=[run_id_openapi_parameter()])
    def delete(self, request, run_id: str, sid: str):
        services.session_revoke(run_id=run_id, sid=sid)
        return Response(status=status.HTTP_204_NO_CONTENT)
