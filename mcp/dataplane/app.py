"""The web door's ASGI application: data-plane routes on the event loop, the rest to Django.

Answered here, without Django's request handling or middleware (DESIGN section 1):
- POST /api/maestro/v1/runs/{runId}/mcp/invoke  (session bearer token)
- GET  /api/maestro/v1/runs/{runId}/mcp/tools   (session bearer token)
- POST /api/maestro/v1/runs/{runId}/mcp/sessions with an X-API-Key (DRF keeps the browsable form
  and cookie logins)
- POST/GET/DELETE /api/maestro/v1/runs/{runId}/mcp  (the gateway as an MCP server: mcp.mcpserver)
Everything else (admin, the registry and session-management API, pages, health, metrics, CORS
preflights, and any request for a Host not in ALLOWED_HOSTS) goes to Django's WSGI app, unchanged,
on a bounded thread pool (a2wsgi). With MAESTRO_MCP_ENABLED=false no route is answered here, and
Django answers 404 for them like for every other MCP route.

Each handler parses, calls one service, renders.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from opentelemetry.trace import SpanKind

from maestro import errors, telemetry
from mcp.dataplane.lifecycle import data_plane_start, data_plane_stop
from mcp.dataplane.http import API_KEY_CHALLENGE, RECEIPT_HEADER, ClientGone, Request, Responder, parse_json_object
from mcp.mcpserver.endpoint import McpEndpoint
from mcp.mcpserver.streams import hub
from mcp.services.invoke import tool_invoke, tools_for_session
from sessions_app import scopes as S
from sessions_app.api import session_created_json
from sessions_app.apikeys import apikey_verify_async
from sessions_app.permissions import operator_refusal
from sessions_app.services import session_create, session_request_parse
from sessions_app.verify import bearer_token

logger = logging.getLogger("maestro.dataplane")

_RUN_ROUTE = re.compile(r"/api/maestro/v1/runs/([^/]+)/mcp(?:/(invoke|tools|sessions))?")
INVOKE_FIELDS = frozenset({"server", "tool", "arguments", "timeout_ms"})


class DataPlane:
    def __init__(self, control_app) -> None:
        self.control = control_app  # Django, as an ASGI app (a2wsgi over its WSGI handler)
        self.enabled = settings.MAESTRO_MCP_ENABLED
        self.respond = Responder()
        self._routes = {("POST", "invoke"): self.invoke, ("GET", "tools"): self.tools, ("POST", "sessions"): self.sessions}
        # The gateway as an MCP server (mcp.mcpserver): every method but CORS preflights.
        self.mcp = McpEndpoint(self.respond)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        handler = self._claim(scope) if scope["type"] == "http" and self.enabled else None
        if handler is None:
            await self._to_django(scope, receive, send)
            return
        request = Request.of(scope, receive)
        if not request.host_allowed() or (handler == self.sessions and "x-api-key" not in request.headers):
            await self._to_django(scope, receive, send)
            return
        route = "/api/maestro/v1/runs/{run_id}/mcp" + (f"/{scope['maestro.route']}" if scope["maestro.route"] else "")
        with telemetry.span(
            "mcp/runs", kind=SpanKind.SERVER, traceparent=request.headers.get("traceparent"),
            **{"http.request.method": request.method, "http.route": route},
        ) as span:
            try:
                await handler(request, send)
            except ClientGone:
                self.respond.log(request, 499)
            except errors.GatewayError as exc:
                await self.respond.error(send, request, exc)
            except Exception:
                await self.respond.crash(send, request)
            if request.status:
                span.set_attribute("http.response.status_code", request.status)

    async def _to_django(self, scope, receive, send) -> None:
        async def coroutine_receive():
            # a2wsgi hands receive() to run_coroutine_threadsafe, which takes only coroutines;
            # granian's receive returns another kind of awaitable.
            return await receive()

        await self.control(scope, coroutine_receive, send)

    def _claim(self, scope):
        match = _RUN_ROUTE.fullmatch(scope["path"])
        if match is None:
            return None
        if match.group(2) is None:
            handler = self.mcp if scope["method"] != "OPTIONS" else None
        else:
            handler = self._routes.get((scope["method"], match.group(2)))
        if handler is not None:
            scope["maestro.run_id"], scope["maestro.route"] = match.group(1), match.group(2)
        return handler

    # --- the routes --------------------------------------------------------------------------

    async def invoke(self, request: Request, send) -> None:
        body = parse_json_object(await request.body(), request.headers.get("content-type", ""))
        unknown = set(body) - INVOKE_FIELDS
        if unknown:
            raise errors.InvalidInput(f"{sorted(unknown)[0][:64]}: unknown field", code="invalid_request")
        outcome = await tool_invoke(
            token=bearer_token(request.headers.get("authorization")), run_id=request.scope["maestro.run_id"],
            server=body.get("server"), tool=body.get("tool"), arguments=body.get("arguments"),
            timeout_ms=body.get("timeout_ms"), transport="http",
        )
        answer = {
            "invocation_id": outcome.invocation_id, "server": outcome.server, "tool": outcome.tool, "result": outcome.result,
            "latency_ms": outcome.latency_ms, "evidence": {"seq": outcome.evidence_seq, "hash": outcome.evidence_hash},
        }
        await self.respond.json(send, request, 200, answer, {RECEIPT_HEADER: outcome.receipt})

    async def tools(self, request: Request, send) -> None:
        listed = await tools_for_session(token=bearer_token(request.headers.get("authorization")), run_id=request.scope["maestro.run_id"])
        await self.respond.json(send, request, 200, {"tools": listed, "count": len(listed)})

    async def sessions(self, request: Request, send) -> None:
        try:
            operator = await apikey_verify_async(key=request.headers["x-api-key"].strip())
        except errors.Unauthenticated as exc:
            # As DRF answers a bad key on the same route (maestro.api_errors).
            await self.respond.error(send, request, errors.Unauthenticated(exc.message, code="unauthenticated"), challenge=API_KEY_CHALLENGE)
            return
        refusal = operator_refusal(operator, scope=S.SESSIONS)
        if refusal is not None:
            raise errors.Forbidden(refusal, code="forbidden")
        # The operator API's own strict JSON rules (maestro.jsonstrict, behind DRF's parser too), so
        # this door answers a session request exactly as Django's would.
        fields = session_request_parse(parse_json_object(await request.body(), request.headers.get("content-type", ""), strict=True))
        record, token = await session_create(run_id=request.scope["maestro.run_id"], created_by=operator.name, **fields)
        await self.respond.json(send, request, 201, session_created_json(record, token), {"cache-control": "no-store"})

    # --- start and stop ----------------------------------------------------------------------

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("data plane failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await data_plane_start(serve=self.enabled)
        if self.enabled:
            hub().start()  # one list-change subscription per worker (mcp.mcpserver.streams)

    async def shutdown(self) -> None:
        await data_plane_stop()
