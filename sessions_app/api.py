"""The sessions API: thin DRF views over `sessions_app.services` / `selectors`.

Reading a run's sessions needs any operator scope; creating and revoking need `mcp:sessions`
(or `admin:mcp`, or a staff login). Errors are raised, and rendered by maestro.api_errors.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework import status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from maestro import bridge
from sessions_app import selectors, services
from sessions_app.permissions import IsOperator, RequireSessions
from sessions_app.principals import operator_for


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


class RunSessionsView(APIView):
    """POST: open a session for the run; GET: list the run's sessions; DELETE: revoke them all."""

    def get_permissions(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsOperator()]
        return [IsOperator(), RequireSessions()]

    def post(self, request, run_id: str):
        # API-key callers are answered by the data plane (mcp.dataplane); a browser session with
        # the browsable form lands here, on the same service.
        fields = services.session_request_parse(request.data)
        record, token = bridge.run(services.session_create(run_id=run_id, created_by=operator_for(request.user).name, **fields))
        return Response(session_created_json(record, token), status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    def get(self, request, run_id: str):
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.session_list(run_id=run_id), request, view=self)
        now = datetime.now(tz=UTC)
        return paginator.get_paginated_response([session_json(r, now) for r in page])

    def delete(self, request, run_id: str):
        services.session_revoke_run(run_id=run_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunSessionView(APIView):
    """DELETE: revoke one session (idempotent)."""

    permission_classes = [IsOperator, RequireSessions]

    def delete(self, request, run_id: str, sid: str):
        services.session_revoke(run_id=run_id, sid=sid)
        return Response(status=status.HTTP_204_NO_CONTENT)
