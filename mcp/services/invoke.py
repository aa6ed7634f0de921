"""The one core every door calls: authenticate, authorize, validate, call upstream, record.

A coroutine, on the data plane's event loop (DESIGN section 1); no request object and no proto in
here. The checks run in the documented order (README, "Invoking tools"), each with its own error
code. A request that is not well-formed (check 3: missing or ill-typed fields, text or numbers
that have no canonical form) is refused before anything is recorded; from there on, every attempt
(allowed or denied, good or failed) leaves exactly one evidence row, and every policy decision
leaves a signed receipt.

Hot path: the token check and the revocation check in memory (sessions_app.verify), one Redis
round trip for the in-flight slot, servers, tool lists and compiled schemas from process memory
(mcp.services.catalog), the pooled upstream client, one INSERT shared with concurrent calls
(mcp.services.evidence_writer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from jsonschema import validators as jsonschema_validators
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from jsonschema.exceptions import SchemaError

from maestro import aredis, errors, metrics, telemetry
from mcp import policy
from mcp.canonical import digest
from mcp.receipts import Decision, receipt_issue
from mcp.services import catalog
from mcp.services.evidence import EvidenceEntry
from mcp.services.evidence_writer import evidence_append
from mcp.services.limits import session_slot
from mcp.services.toolview import tools_callable
from mcp.upstream import wire
from mcp.upstream.client import get_client
from sessions_app.tokens import SessionClaims
from sessions_app.verify import session_authenticate

logger = logging.getLogger("mcp.invoke")
MAX_TOOL_NAME = 128
_MISS_REFRESH_SECONDS = 5
CANCELLED = "cancelled"  # the evidence error code of a call its caller abandoned


@dataclass(frozen=True)
class InvocationResult:
    invocation_id: str
    server: str
    server_id: str
    tool: str
    result: dict
    is_error: bool
    latency_ms: float
    evidence_seq: int
    evidence_hash: str
    receipt: str


class UpstreamInvalidResult(errors.UpstreamFailed):
    """The tool ran, but its result holds values with no canonical JSON form (NaN, Infinity, a
    lone surrogate): recorded as such, never passed on half-understood."""

    code = "upstream_invalid_result"


class _Attempt:
    """What is known about one attempt so far; turned into its evidence row at the end."""

    __slots__ = ("claims", "run_id", "server_id", "server_name", "tool", "arguments_digest", "receipt", "transport", "started", "kind", "method")

    def __init__(self, *, claims: SessionClaims, server_ref: str, tool: str, arguments_digest: str, transport: str,
                 kind: str = "tool", method: str = "tools/call"):
        self.claims = claims
        self.kind = kind
        self.method = method
        self.run_id = claims.run_id
        self.server_id = ""
        self.server_name = server_ref[:64]
        self.tool = tool
        self.arguments_digest = arguments_digest
        self.receipt = ""
        self.transport = transport
        self.started = time.perf_counter()

    def decide(self, decision: Decision) -> Decision:
        metrics.record_policy_decision(allow=decision.allow, engine=decision.engine)
        trace.get_current_span().set_attribute("maestro.decision", "allow" if decision.allow else "deny")
        self.receipt = receipt_issue(
            decision=decision, input_digest=digest(self.policy_input()), run_id=self.run_id,
            sid=self.claims.sid, server=self.server_name, tool=self.tool,
        )
        return decision

    def policy_input(self) -> dict:
        found = {
            "subject": {"type": "session", "sid": self.claims.sid, "run": self.run_id},
            "run": self.run_id,
            "session": {"sid": self.claims.sid, "scopes": sorted(self.claims.scopes), "servers": list(self.claims.servers)},
            "server": {"id": self.server_id, "name": self.server_name},
            "tool": self.tool,
            "arguments_digest": self.arguments_digest,
            "transport": self.transport,
        }
        if self.kind != "tool":
            found["kind"] = self.kind  # "tool" is then the resource's URI or the prompt's name
        return found

    async def record(self, *, status: str, error_code: str = "", result_digest: str = "", is_error: bool = False):
        latency_us = int((time.perf_counter() - self.started) * 1_000_000)
        row = await evidence_append(
            entry=EvidenceEntry(
                run_id=self.run_id, session_id=self.claims.sid, server_id=self.server_id, server_name=self.server_name,
                tool=self.tool, arguments_digest=self.arguments_digest, result_digest=result_digest, status=status,
                error_code=error_code, is_error=is_error, latency_us=latency_us, receipt=self.receipt, transport=self.transport,
                kind=self.kind,
            )
        )
        seconds = latency_us / 1_000_000
        metrics.record_invocation(status="success" if status == "success" else "error", server=self.server_name, seconds=seconds)
        metrics.record_server_operation(
            method=self.method, tool=self.tool if self.kind == "tool" else None, transport="tcp", seconds=seconds,
            error_type=error_code or ("tool_error" if is_error else None),
        )
        return row


def _storable_name(value: object, limit: int) -> bool:
    """A name that every store takes as is: printable (no NUL or control characters, which
    PostgreSQL or a log line would refuse or garble) and encodable (no lone surrogates)."""
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _validate_request(*, server: object, tool: object, arguments: object, timeout_ms: object) -> tuple[dict, str]:
    """The request's shape (check 3): the arguments and their digest, or InvalidInput."""
    if not _storable_name(server, 64):
        raise errors.InvalidInput("server: a server id or name (1-64 printable characters) is required", code="invalid_server")
    if not _storable_name(tool, MAX_TOOL_NAME):
        raise errors.InvalidInput(f"tool: a tool name (1-{MAX_TOOL_NAME} printable characters) is required", code="invalid_tool")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise errors.InvalidInput("arguments: must be a JSON object", code="invalid_arguments")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1):
        raise errors.InvalidInput("timeout_ms: must be a positive integer", code="invalid_timeout")
    try:
        arguments_digest = digest(arguments)
    except (ValueError, RecursionError):
        # NaN, Infinity, a number too large for a double, or a lone surrogate: JSON parsers take
        # them, but they have no canonical form, so no digest could ever be verified.
        raise errors.InvalidInput(
            "arguments: numbers must be finite and text must be valid Unicode (no NaN, Infinity or lone surrogates)",
            code="invalid_arguments",
        ) from None
    return arguments, arguments_digest


_validators: dict[tuple, object] = {}
_BROKEN_SCHEMA = object()


async def _may_refresh_tools(*, server_id: str) -> bool:
    try:
        return await aredis.cache_add(f"mcp:tools-miss-refresh:{server_id}", 1, _MISS_REFRESH_SECONDS)
    except aredis.CacheUnavailable:
        return False  # without the shared cache there is no shared rate limit: do not refresh


async def _find_tool(*, server, spec, tool: str) -> dict:
    found = (await catalog.server_tools(server=server, spec=spec)).get(tool)
    if found is None and await _may_refresh_tools(server_id=server.id):
        # A tool added upstream since the last fetch: refresh once, at most every few seconds per
        # server, so unknown names cannot be used to hammer the upstream with tools/list.
        found = (await catalog.server_tools(server=server, spec=spec, refresh=True)).get(tool)
    if found is None:
        raise errors.NotFound(f"tool {tool!r} not found on server {server.name!r}", code="tool_not_found")
    return found


def _validate_arguments(*, server_id: str, tool: dict, arguments: dict) -> None:
    schema = tool.get("inputSchema")
    if not isinstance(schema, dict):
        return
    key = (server_id, tool.get("name"), digest(schema))
    validator = _validators.get(key)
    if validator is None:
        try:
            cls = jsonschema_validators.validator_for(schema)
            cls.check_schema(schema)
            validator = cls(schema)
        except SchemaError:
            validator = _BROKEN_SCHEMA
        if len(_validators) > 5000:
            _validators.clear()
        _validators[key] = validator
    if validator is _BROKEN_SCHEMA:
        return  # an upstream's broken schema is not the caller's fault; the upstream validates too
    error = next(iter(validator.iter_errors(arguments)), None)
    if error is not None:
        path = "arguments" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise errors.InvalidInput(f"{path}: {error.message}"[:500], code="invalid_arguments", details={"path": path})


def _timeout_seconds(*, spec, timeout_ms: int | None, deadline_s: float | None) -> float:
    if timeout_ms is not None and timeout_ms > spec.timeout_ms:
        raise errors.InvalidInput(f"timeout_ms: at most the server's timeout ({spec.timeout_ms} ms)", code="invalid_timeout")
    seconds = (timeout_ms or spec.timeout_ms) / 1000
    if deadline_s is not None:
        if deadline_s <= 0:
            raise errors.UpstreamTimeout("the caller's deadline passed before the upstream call", code="deadline_exceeded")
        seconds = min(seconds, deadline_s)
    return seconds


async def _longest_call_s(timeout_ms: int | None, deadline_s: float | None) -> float:
    """The longest this call's upstream request may last: its own timeout, else the longest any
    registered server allows, bounded by the caller's deadline."""
    ceiling_ms = timeout_ms if timeout_ms is not None else await catalog.timeout_ceiling_ms()
    seconds = ceiling_ms / 1000
    return min(seconds, deadline_s) if deadline_s is not None else seconds


def _denied(decision: Decision, receipt: str) -> errors.GatewayError:
    return errors.Forbidden(decision.reason, code=decision.code or "policy_denied", receipt=receipt)


async def tool_invoke(
    *, token: str | None, run_id: str, server: object, tool: object, arguments: object,
    timeout_ms: object = None, deadline_s: float | None = None, transport: str = "http",
    meta: dict | None = None, on_message: wire.OnMessage | None = None, traceparent: str | None = None,
    claims: SessionClaims | None = None, extra_params: dict | None = None,
) -> InvocationResult:
    """Call `tool` on `server` for the session of `token`. `meta` goes to the upstream in
    `params._meta` (a progress token); `on_message` receives what the upstream streams before its
    answer (progress notifications), for doors that pass it on. `traceparent`: the caller's W3C
    trace context, when the door has one that is not already the current span's (gRPC metadata,
    MCP `params._meta`); the call is traced as a SERVER span `tools/call <tool>` (OpenTelemetry
    MCP conventions) and the upstream request continues it. A door that has just authenticated
    the token for this run (the MCP endpoint) passes its `claims` instead, and the params of a
    multi-round call (inputResponses, requestState) as `extra_params`."""
    tool_name = tool[:MAX_TOOL_NAME] if isinstance(tool, str) else None
    with telemetry.span(
        f"tools/call {tool_name}" if tool_name else "tools/call", kind=SpanKind.SERVER, traceparent=traceparent,
        **{"mcp.method.name": "tools/call", "gen_ai.tool.name": tool_name, "gen_ai.operation.name": "execute_tool",
           "network.transport": "tcp", "maestro.run": run_id, "maestro.transport": transport,
           "maestro.server": server[:64] if isinstance(server, str) else None},
    ) as span:
        if claims is None or claims.run_id != run_id:
            claims = await session_authenticate(token=token, run_id=run_id)
        arguments, arguments_digest = _validate_request(server=server, tool=tool, arguments=arguments, timeout_ms=timeout_ms)
        attempt = _Attempt(claims=claims, server_ref=server, tool=tool, arguments_digest=arguments_digest, transport=transport)
        outcome = await _attempted(
            attempt, span, longest_call_s=await _longest_call_s(timeout_ms, deadline_s),
            call=lambda: _authorized_call(
                attempt, server_ref=server, arguments=arguments, timeout_ms=timeout_ms, deadline_s=deadline_s,
                meta=meta, on_message=on_message, extra_params=extra_params,
            ),
        )
        span.set_attribute("maestro.status", "success")
        return outcome


async def _attempted(attempt: _Attempt, span, *, longest_call_s: float, call):
    """`call()` under the in-flight gauge and the session's slot. A failure is recorded (denied or
    error) and raised with the receipt of the decision made before it."""
    try:
        with metrics.invocation_in_flight(transport=attempt.transport):
            async with session_slot(sid=attempt.claims.sid, longest_call_s=longest_call_s):
                return await call()
    except errors.GatewayError as exc:
        denied = isinstance(exc, errors.Forbidden) or isinstance(exc, policy.PolicyUnavailable)
        span.set_attribute("maestro.status", "denied" if denied else "error")
        await attempt.record(status="denied" if denied else "error", error_code=exc.code)
        raise (exc.with_receipt(attempt.receipt) if attempt.receipt else exc) from None
    except asyncio.CancelledError:
        # The caller went away (a gRPC deadline or cancellation cancels the handler). The tool
        # may have run: its row is written all the same, shielded from the cancellation.
        await asyncio.shield(attempt.record(status="error", error_code=CANCELLED))
        raise


async def _usable_server(attempt: _Attempt, server_ref: str):
    """Checks 5 and 6: the session may invoke at all, the server exists and is enabled."""
    denial = policy.builtin_check_scope(session_scopes=attempt.claims.scopes)
    if denial:
        raise _denied(attempt.decide(denial), attempt.receipt)
    snapshot, spec = await catalog.server_resolve(ref=server_ref)
    attempt.server_id, attempt.server_name = snapshot.id, snapshot.name
    if not snapshot.enabled:
        raise errors.Unavailable(f"server {snapshot.name!r} is disabled", code="server_disabled")
    return snapshot, spec


async def _final_decision(attempt: _Attempt) -> None:
    """Check 13: OPA when configured, else the builtin allow; a deny raises with its receipt."""
    try:
        decision = attempt.decide(await policy.policy_final_decide(policy_input=attempt.policy_input()))
    except policy.PolicyUnavailable as exc:
        attempt.decide(exc.decision)
        raise
    if not decision.allow:
        raise _denied(decision, attempt.receipt)


async def _authorized_call(
    attempt: _Attempt, *, server_ref: str, arguments: dict, timeout_ms, deadline_s: float | None,
    meta: dict | None, on_message, extra_params: dict | None = None,
) -> InvocationResult:
    claims = attempt.claims
    snapshot, spec = await _usable_server(attempt, server_ref)
    denial = policy.builtin_check_server_and_tool(
        session_scopes=claims.scopes, session_servers=claims.servers, server_id=snapshot.id, server_name=snapshot.name,
        server_scopes=list(snapshot.scopes), tool_allow=list(snapshot.tool_allow), tool_deny=list(snapshot.tool_deny), tool=attempt.tool,
    )
    if denial:
        raise _denied(attempt.decide(denial), attempt.receipt)

    tool_def = await _find_tool(server=snapshot, spec=spec, tool=attempt.tool)
    _validate_arguments(server_id=snapshot.id, tool=tool_def, arguments=arguments)
    timeout_s = _timeout_seconds(spec=spec, timeout_ms=timeout_ms, deadline_s=deadline_s)
    await _final_decision(attempt)

    started = time.perf_counter()
    try:
        result = await get_client().call_tool(
            server=spec, name=attempt.tool, arguments=arguments, session_key=claims.sid, timeout_s=timeout_s,
            meta=meta, on_message=on_message, extra_params=extra_params,
        )
    except errors.GatewayError as exc:
        metrics.record_client_operation(method="tools/call", tool=attempt.tool, error_type=exc.code, transport="tcp", seconds=time.perf_counter() - started)
        raise
    metrics.record_client_operation(
        method="tools/call", tool=attempt.tool, transport="tcp", seconds=time.perf_counter() - started,
        error_type="tool_error" if result.get("isError") else None,
    )
    try:
        result_digest = digest(result)
    except (ValueError, RecursionError):
        raise UpstreamInvalidResult(
            f"MCP server {snapshot.name!r} returned a result with values that have no JSON form (NaN, Infinity or a lone surrogate)"
        ) from None
    is_error = bool(result.get("isError"))
    row = await attempt.record(status="success", result_digest=result_digest, is_error=is_error)
    return InvocationResult(
        invocation_id=str(row.id), server=snapshot.name, server_id=snapshot.id, tool=attempt.tool, result=result,
        is_error=is_error, latency_ms=round(row.latency_us / 1000, 3), evidence_seq=row.seq, evidence_hash=row.hash,
        receipt=attempt.receipt,
    )


async def tools_for_session(*, token: str | None, run_id: str) -> list[dict]:
    """The tools this session may call: its servers (or all enabled ones), filtered by the same
    builtin rules the invoke path applies."""
    claims = await session_authenticate(token=token, run_id=run_id)
    if policy.builtin_check_scope(session_scopes=claims.scopes) and "mcp:tools" not in claims.scopes:
        raise errors.Forbidden("session lacks scope 'mcp:invoke' or 'mcp:tools'", code="scope_missing")
    server_tools = []
    for snapshot, spec in await catalog.servers_of_session(server_ids=claims.servers):
        if not snapshot.enabled:
            continue
        try:
            server_tools.append((snapshot, list((await catalog.server_tools(server=snapshot, spec=spec)).values())))
        except errors.GatewayError:
            continue  # an unreachable server has no callable tools right now
    return tools_callable(scopes=claims.scopes, servers=claims.servers, server_tools=server_tools)


@dataclass(frozen=True)
class ReadResult:
    server: str
    server_id: str
    result: dict
    evidence_seq: int
    evidence_hash: str
    receipt: str


async def upstream_read(
    *, claims: SessionClaims, server: str, kind: str, name: str, method: str, params: dict, transport: str = "mcp",
    meta: dict | None = None, on_message: wire.OnMessage | None = None, traceparent: str | None = None,
) -> ReadResult:
    """A resource read (`kind` "resource", `name` the upstream URI, `method` resources/read) or a
    prompt get ("prompt", the prompt's name, prompts/get) on `server`, for an authenticated
    session: checked like a tool call (mcp:invoke, the session's servers, the server's scopes, OPA;
    the tool globs are about tools), answered with a receipt and recorded as evidence of its kind.
    `params` go upstream as they are (the upstream name in place), with `meta` as `_meta`;
    `traceparent` as for tool_invoke."""
    with telemetry.span(
        f"{method} {name[:MAX_TOOL_NAME]}", kind=SpanKind.SERVER, traceparent=traceparent,
        **{"mcp.method.name": method, "network.transport": "tcp", "maestro.run": claims.run_id,
           "maestro.transport": transport, "maestro.server": server[:64]},
    ) as span:
        try:
            arguments_digest = digest(params)
        except (ValueError, RecursionError):
            raise errors.InvalidInput("params: numbers must be finite and text must be valid Unicode", code="invalid_arguments") from None
        attempt = _Attempt(claims=claims, server_ref=server, tool=name, arguments_digest=arguments_digest, transport=transport, kind=kind, method=method)
        outcome = await _attempted(
            attempt, span, longest_call_s=await _longest_call_s(None, None),
            call=lambda: _authorized_read(attempt, server_ref=server, params=params, meta=meta, on_message=on_message),
        )
        span.set_attribute("maestro.status", "success")
        return outcome


async def _authorized_read(attempt: _Attempt, *, server_ref: str, params: dict, meta: dict | None, on_message) -> ReadResult:
    claims = attempt.claims
    snapshot, spec = await _usable_server(attempt, server_ref)
    denial = policy.builtin_check_server(
        session_scopes=claims.scopes, session_servers=claims.servers, server_id=snapshot.id, server_name=snapshot.name,
        server_scopes=list(snapshot.scopes),
    )
    if denial:
        raise _denied(attempt.decide(denial), attempt.receipt)
    await _final_decision(attempt)
    sent = dict(params)
    if meta:
        sent["_meta"] = dict(meta)
    started = time.perf_counter()
    try:
        result = await get_client().request(
            server=spec, method=attempt.method, params=sent, session_key=claims.sid, timeout_s=spec.timeout_ms / 1000,
            name=attempt.tool, on_message=on_message,
        )
    except errors.GatewayError as exc:
        metrics.record_client_operation(method=attempt.method, tool=None, error_type=exc.code, transport="tcp", seconds=time.perf_counter() - started)
        raise
    metrics.record_client_operation(method=attempt.method, tool=None, error_type=None, transport="tcp", seconds=time.perf_counter() - started)
    try:
        result_digest = digest(result)
    except (ValueError, RecursionError):
        raise UpstreamInvalidResult(f"MCP server {snapshot.name!r} returned a result with values that have no JSON form") from None
    row = await attempt.record(status="success", result_digest=result_digest)
    return ReadResult(
        server=snapshot.name, server_id=snapshot.id, result=result, evidence_seq=row.seq, evidence_hash=row.hash, receipt=attempt.receipt,
    )
