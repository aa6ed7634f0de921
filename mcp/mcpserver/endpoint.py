"""`POST/GET/DELETE /api/maestro/v1/runs/{runId}/mcp`: the streamable HTTP transport.

Every request: the Origin check (DNS-rebinding protection: a browser Origin outside CORS_ORIGIN is
403), the run's session token (`Authorization: Bearer`, the checks invoke makes; 401 carries
`WWW-Authenticate: Bearer`), and a session scope that allows listing (`mcp:invoke` or
`mcp:tools`; calling needs `mcp:invoke`, checked by the core). Then the revision:

- an `MCP-Protocol-Version` header naming anything but a session revision selects 2026-07-28
  (stateless): the request's `_meta` and the Mcp-Method / Mcp-Name headers are checked against
  the body, an unknown version is -32022 with the supported list; no session id is used or minted;
  GET and DELETE are 405; `subscriptions/listen` opens the notification stream;
- otherwise a session revision: `initialize` mints an `Mcp-Session-Id`; every other request must
  carry one (400 without, 404 when unknown, ended, or made for another token); GET opens the
  session's one stream (a second is 409, on any worker); DELETE ends the session; 2025-03-26
  batches are answered as arrays.

Refusals before a JSON-RPC message exists (credentials, Origin, session id, body size, media type)
use the project's error shape; refusals of a message are JSON-RPC errors.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from maestro import errors, metrics
from maestro.api_errors import error_body
from mcp.dataplane.http import Request, Responder
from mcp.mcpserver import methods, sessions, streams
from mcp.mcpserver import protocol as R
from mcp.mcpserver.protocol import Message, RpcError
from sessions_app import scopes as S
from sessions_app.tokens import SessionClaims
from sessions_app.verify import bearer_token, session_authenticate

logger = logging.getLogger("mcp.mcpserver")

MAX_BATCH = 32
ALLOW = "GET, POST, DELETE"


class McpEndpoint:
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.cors_origins = frozenset(settings.CORS_ALLOWED_ORIGINS)

    async def __call__(self, request: Request, send) -> None:
        try:
            await self._handle(request, send)
        except RpcError as exc:  # a message refused before it was understood: 400, no id
            await self.respond.json(send, request, 400, exc.body(None))

    async def _handle(self, request: Request, send) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin not in self.cors_origins:
            raise errors.Forbidden("this Origin may not use the MCP endpoint (see CORS_ORIGIN)", code="origin_not_allowed")
        claims = await session_authenticate(token=bearer_token(request.headers.get("authorization")), run_id=request.scope["maestro.run_id"])
        if S.INVOKE not in claims.scopes and "mcp:tools" not in claims.scopes:
            raise errors.Forbidden("session lacks scope 'mcp:invoke' or 'mcp:tools'", code="scope_missing")
        if request.method not in ("POST", "GET", "DELETE"):
            await self._refuse(send, request, 405, "method_not_allowed", f"{request.method} is not served here", {"allow": ALLOW})
            return
        version_header = request.headers.get(R.H_PROTOCOL_VERSION)
        modern = version_header is not None and version_header not in R.SESSION_VERSIONS
        if request.method == "POST":
            await (self._post_modern(request, send, claims) if modern else self._post_session(request, send, claims))
        elif modern:
            await self._refuse(send, request, 405, "method_not_allowed", "protocol revision 2026-07-28 has no GET stream or DELETE: use subscriptions/listen", {"allow": "POST"})
        elif request.method == "GET":
            await self._get_stream(request, send, claims)
        else:
            session_id = self._session_id(request)
            await sessions.mcp_session_close(claims=claims, session_id=session_id)
            await self.respond.empty(send, request, 204)

    # --- 2026-07-28 ------------------------------------------------------------------------

    async def _post_modern(self, request: Request, send, claims: SessionClaims) -> None:
        decoded = await self._body(request)
        message = R.message_of(decoded) if not isinstance(decoded, list) else None
        if message is None:
            raise RpcError(R.INVALID_REQUEST, "Invalid Request: batches are not part of protocol revision 2026-07-28")
        if message.kind == "notification":
            if request.headers.get(R.H_PROTOCOL_VERSION) != R.MODERN:
                raise R.unsupported_version(request.headers.get(R.H_PROTOCOL_VERSION, ""))
            await self.respond.empty(send, request, 202)
            return
        if message.kind == "response":
            raise RpcError(R.INVALID_REQUEST, "Invalid Request: a client sends no responses in protocol revision 2026-07-28")
        try:
            R.modern_envelope_check(message, request.headers)
        except RpcError as exc:
            await self._rpc_error(send, request, R.MODERN, message.id, exc)
            return
        if message.method == "subscriptions/listen":
            await self._listen(request, send, claims, message)
            return
        await self._serve(request, send, claims, R.MODERN, message)

    async def _listen(self, request: Request, send, claims: SessionClaims, message: Message) -> None:
        if not R.accepts(request.headers)[1]:
            await self._rpc_error(send, request, R.MODERN, message.id, RpcError(R.INVALID_REQUEST, "subscriptions/listen answers with an event stream: accept text/event-stream"))
            return
        asked = message.params.get("notifications") if isinstance(message.params.get("notifications"), dict) else {}
        names = {"toolsListChanged": "tools", "resourcesListChanged": "resources", "promptsListChanged": "prompts"}
        agreed = {flag: True for flag in names if asked.get(flag) is True}
        subscription = {R.META_SUBSCRIPTION_ID: message.id}

        def wrap(notification: dict) -> dict:
            return {**notification, "params": {"_meta": subscription}}

        ack = {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {"_meta": subscription, "notifications": agreed}}
        await self._stream(request, send, claims, frozenset(names[flag] for flag in agreed), wrap, streams.sse_event(ack), {})

    # --- session revisions -----------------------------------------------------------------

    def _session_id(self, request: Request) -> str:
        session_id = request.headers.get(R.H_SESSION_ID)
        if not session_id:
            raise errors.InvalidInput("Mcp-Session-Id is required: send initialize first", code="mcp_session_missing")
        return session_id

    async def _post_session(self, request: Request, send, claims: SessionClaims) -> None:
        decoded = await self._body(request)
        if isinstance(decoded, dict) and decoded.get("method") == "initialize" and "id" in decoded:
            await self._initialize(request, send, claims, R.message_of(decoded))
            return
        session_id = self._session_id(request)
        entry = await sessions.mcp_session_get(claims=claims, session_id=session_id)
        version, context = str(entry.get("v")), {"session_id": session_id, "log_level": entry.get("level")}
        if isinstance(decoded, list):
            await self._batch(request, send, claims, version, decoded, context)
            return
        message = R.message_of(decoded)
        if message.kind != "request":
            await self.respond.empty(send, request, 202)  # initialized, cancelled, a response: nothing to answer
            return
        if message.method == "initialize" or message.method == "server/discover":
            raise RpcError(R.INVALID_REQUEST, f"Invalid Request: {message.method} is not valid inside a session")
        await self._serve(request, send, claims, version, message, context)

    async def _initialize(self, request: Request, send, claims: SessionClaims, message: Message) -> None:
        version = R.initialize_version(message.params.get("protocolVersion"))
        session_id = await sessions.mcp_session_open(claims=claims, version=version)
        result = {"protocolVersion": version, "capabilities": R.CAPABILITIES, "serverInfo": R.SERVER_INFO, "instructions": R.INSTRUCTIONS}
        self._record("initialize", None, request)
        await self.respond.json(send, request, 200, {"jsonrpc": "2.0", "id": message.id, "result": result}, {"mcp-session-id": session_id})

    async def _batch(self, request: Request, send, claims: SessionClaims, version: str, batch: list, context: dict) -> None:
        if version != "2025-03-26":
            raise RpcError(R.INVALID_REQUEST, f"Invalid Request: batches are not part of protocol revision {version}")
        if not batch or len(batch) > MAX_BATCH:
            raise RpcError(R.INVALID_REQUEST, f"Invalid Request: a batch holds 1 to {MAX_BATCH} messages")
        answers = []
        for item in batch:
            try:
                message = R.message_of(item)
            except RpcError as exc:
                answers.append(exc.body(None))
                continue
            if message.kind != "request":
                continue
            answers.append(await self._answer(claims, version, message, None, context))
        if not answers:
            await self.respond.empty(send, request, 202)
            return
        await self.respond.json(send, request, 200, answers)  # type: ignore[arg-type]

    async def _get_stream(self, request: Request, send, claims: SessionClaims) -> None:
        session_id = self._session_id(request)
        await sessions.mcp_session_get(claims=claims, session_id=session_id)
        if not R.accepts(request.headers)[1]:
            await self._refuse(send, request, 406, "not_acceptable", "the GET stream is an event stream: accept text/event-stream")
            return
        if not await sessions.mcp_session_stream_claim(session_id=session_id):
            await self._refuse(send, request, 409, "stream_exists", "this MCP session already has its GET stream open")
            return

        async def renew() -> None:
            await sessions.mcp_session_stream_claim(session_id=session_id, renew=True)

        try:
            await self._stream(request, send, claims, frozenset(streams.NOTIFICATION), lambda n: n, None, {"mcp-session-id": session_id}, renew)
        finally:
            await sessions.mcp_session_stream_release(session_id=session_id)

    # --- serving a request -----------------------------------------------------------------

    async def _serve(self, request: Request, send, claims: SessionClaims, version: str, message: Message, context: dict | None = None) -> None:
        """Answer as JSON, or as an event stream once the upstream sends something for the client
        (progress, log messages) and the client accepts one."""
        sse_ok = R.accepts(request.headers)[1]
        opened: list = []
        headers = {"mcp-session-id": request.headers[R.H_SESSION_ID]} if version != R.MODERN and R.H_SESSION_ID in request.headers else {}

        async def notify(notification: dict) -> None:
            try:
                if not opened:
                    await self.respond.stream_start(send, request, headers)
                    opened.append(True)
                await self.respond.stream_write(send, streams.sse_event(notification))
            except Exception:
                logger.debug("a notification for a client that has gone was dropped")

        body = await self._answer(claims, version, message, notify if sse_ok else None, context)
        if opened:
            try:
                await self.respond.stream_write(send, streams.sse_event(body))
            finally:
                await self.respond.stream_end(send, request)
            return
        status = 200
        if "error" in body and version == R.MODERN:
            status = R.MODERN_ERROR_STATUS.get(body["error"]["code"], 200)
        await self.respond.json(send, request, status, body, headers)

    async def _answer(self, claims: SessionClaims, version: str, message: Message, notify, context: dict | None = None) -> dict:
        handler = methods.METHODS.get(message.method) or (methods.MODERN_ONLY if version == R.MODERN else methods.SESSION_ONLY).get(message.method)
        started = time.perf_counter()
        error_type = None
        try:
            if handler is None:
                raise RpcError(R.METHOD_NOT_FOUND, f"Method not found: {message.method[:128]}")
            result = await handler(methods.Call(claims=claims, version=version, method=message.method, params=message.params, notify=notify, **(context or {})))
            return {"jsonrpc": "2.0", "id": message.id, "result": result}
        except RpcError as exc:
            error_type = str(exc.code)
            return exc.body(message.id)
        except errors.GatewayError as exc:  # a failure outside a call (listing): an error with the gateway's code
            error_type = exc.code
            return RpcError(R.INTERNAL_ERROR, exc.message, gateway_code=exc.code).body(message.id)
        finally:
            if message.method not in methods.RECORDED_BY_CORE:
                metrics.record_server_operation(
                    method=message.method, tool=None, error_type=error_type, transport="tcp", seconds=time.perf_counter() - started,
                )

    async def _stream(self, request: Request, send, claims: SessionClaims, lists: frozenset[str], wrap, first, headers: dict, on_keepalive=None) -> None:
        started: list = []

        async def start() -> None:
            await self.respond.stream_start(send, request, headers)
            started.append(True)

        async def write(data: bytes) -> None:
            await self.respond.stream_write(send, data)

        try:
            await streams.serve_stream(
                receive=request.receive, start=start, write=write, claims=claims, lists=lists, wrap=wrap, first=first, on_keepalive=on_keepalive,
            )
        except OSError:
            pass  # the client went away mid-write
        finally:
            if started:
                await self.respond.stream_end(send, request)
            else:
                self.respond.log(request, 499)  # gone before the stream opened

    # --- small parts -----------------------------------------------------------------------

    async def _body(self, request: Request):
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise errors.InvalidInput("send the body as application/json", code="unsupported_media_type")
        if not any(R.accepts(request.headers)):
            raise errors.InvalidInput("accept application/json and text/event-stream", code="not_acceptable")
        return R.parse_body(await request.body())

    async def _rpc_error(self, send, request: Request, version: str, request_id, exc: RpcError) -> None:
        status = R.MODERN_ERROR_STATUS.get(exc.code, 200) if version == R.MODERN else 200
        await self.respond.json(send, request, status, exc.body(request_id))

    async def _refuse(self, send, request: Request, status: int, code: str, message: str, headers: dict | None = None) -> None:
        await self.respond.json(send, request, status, error_body(code, message), headers)

    def _record(self, method: str, error_type: str | None, request: Request) -> None:
        metrics.record_server_operation(method=method, tool=None, error_type=error_type, transport="tcp", seconds=time.perf_counter() - request.started)

