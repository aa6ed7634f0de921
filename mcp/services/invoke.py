"""The one core every door calls: authenticate, authorize, validate, call upstream, record.

No request object and no proto in here. The checks run in the documented order, each with its
own error code; from the moment the token is verified, every attempt (allowed or denied, good or
failed) leaves exactly one evidence row, and every policy decision leaves a signed receipt.

Hot path budget: one cache round trip for the token (plus the in-flight slot), in-process caches
for server specs, tool lists and compiled schemas, the pooled upstream client, one INSERT.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from jsonschema import validators as jsonschema_validators
from jsonschema.exceptions import SchemaError

from maestro import errors, telemetry
from mcp import policy
from mcp.canonical import digest
from mcp.invocation_metrics import INVOCATION_SECONDS, INVOCATIONS, POLICY_DECISIONS
from mcp.receipts import Decision, receipt_issue
from mcp.services.evidence import EvidenceEntry, evidence_append
from mcp.services.limits import session_slot
from mcp.services.registry import server_spec_get, server_tool_index, server_tools_cached, server_tools_list
from mcp.upstream.client import get_client
from sessions_app.services import SessionClaims, session_authenticate

logger = logging.getLogger("mcp.invoke")
MAX_TOOL_NAME = 128
MAX_ARGUMENT_DEPTH = 32
_MISS_REFRESH_SECONDS = 5


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


class _Attempt:
    """What is known about one attempt so far; turned into its evidence row at the end."""

    __slots__ = ("claims", "run_id", "server_id", "server_name", "tool", "arguments_digest", "receipt", "transport", "started")

    def __init__(self, *, claims: SessionClaims, server_ref: str, tool: str, arguments: dict, transport: str):
        self.claims = claims
        self.run_id = claims.run_id
        self.server_id = ""
        self.server_name = server_ref[:64]
        self.tool = tool[:MAX_TOOL_NAME]
        self.arguments_digest = digest(arguments)
        self.receipt = ""
        self.transport = transport
        self.started = time.perf_counter()

    def decide(self, decision: Decision) -> Decision:
        POLICY_DECISIONS.labels("allow" if decision.allow else "deny", decision.engine).inc()
        self.receipt = receipt_issue(
            decision=decision, input_digest=digest(self.policy_input()), run_id=self.run_id,
            sid=self.claims.sid, server=self.server_name, tool=self.tool,
        )
        return decision

    def policy_input(self) -> dict:
        return {
            "subject": {"type": "session", "sid": self.claims.sid, "run": self.run_id},
            "run": self.run_id,
            "session": {"sid": self.claims.sid, "scopes": sorted(self.claims.scopes), "servers": list(self.claims.servers)},
            "server": {"id": self.server_id, "name": self.server_name},
            "tool": self.tool,
            "arguments_digest": self.arguments_digest,
            "transport": self.transport,
        }

    def record(self, *, status: str, error_code: str = "", result_digest: str = "", is_error: bool = False):
        latency_us = int((time.perf_counter() - self.started) * 1_000_000)
        row = evidence_append(
            entry=EvidenceEntry(
                run_id=self.run_id, session_id=self.claims.sid, server_id=self.server_id, server_name=self.server_name,
                tool=self.tool, arguments_digest=self.arguments_digest, result_digest=result_digest, status=status,
                error_code=error_code, is_error=is_error, latency_us=latency_us, receipt=self.receipt, transport=self.transport,
            )
        )
        INVOCATIONS.labels("success" if status == "success" else "error", self.server_name).inc()
        INVOCATION_SECONDS.labels(self.server_name).observe(latency_us / 1_000_000)
        return row


def _validate_request(*, server: object, tool: object, arguments: object, timeout_ms: object) -> dict:
    if not isinstance(server, str) or not server or len(server) > 64:
        raise errors.InvalidInput("server: a server id or name (1-64 characters) is required", code="invalid_server")
    if not isinstance(tool, str) or not tool or len(tool) > MAX_TOOL_NAME:
        raise errors.InvalidInput(f"tool: a tool name (1-{MAX_TOOL_NAME} characters) is required", code="invalid_tool")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise errors.InvalidInput("arguments: must be a JSON object", code="invalid_arguments")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1):
        raise errors.InvalidInput("timeout_ms: must be a positive integer", code="invalid_timeout")
    return arguments


_validators: dict[tuple, object] = {}
_validators_lock = threading.Lock()
_BROKEN_SCHEMA = object()


def _may_refresh_tools(*, server_id: str) -> bool:
    try:
        return bool(cache.add(f"mcp:tools-miss-refresh:{server_id}", 1, _MISS_REFRESH_SECONDS))
    except Exception:
        return False  # without the shared cache there is no shared rate limit: do not refresh


def _find_tool(*, server, tool: str) -> dict:
    found = server_tool_index(server=server).get(tool)
    if found is None and _may_refresh_tools(server_id=server.id):
        # A tool added upstream since the last fetch: refresh once, at most every few seconds per
        # server, so unknown names cannot be used to hammer the upstream with tools/list.
        server_tools_list(server=server, refresh=True)
        found = server_tool_index(server=server).get(tool)
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
        with _validators_lock:  # compiled once per process, not by every thread that misses at once
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


def _denied(decision: Decision, receipt: str) -> errors.GatewayError:
    exc = errors.Forbidden(decision.reason, code=decision.code or "policy_denied")
    exc.receipt = receipt
    return exc


def tool_invoke(
    *, token: str | None, run_id: str, server: str, tool: str, arguments: dict | None,
    timeout_ms: int | None = None, deadline_s: float | None = None, transport: str = "http",
) -> InvocationResult:
    with telemetry.span("mcp.invoke", run=run_id, server=server if isinstance(server, str) else None, tool=tool if isinstance(tool, str) else None, transport=transport):
        with _database_required("an invocation"):
            claims = session_authenticate(token=token, run_id=run_id)
            arguments = _validate_request(server=server, tool=tool, arguments=arguments, timeout_ms=timeout_ms)
            attempt = _Attempt(claims=claims, server_ref=server, tool=tool, arguments=arguments, transport=transport)
            return _invoke_recorded(attempt, server_ref=server, arguments=arguments, timeout_ms=timeout_ms, deadline_s=deadline_s)


@contextmanager
def _database_required(action: str):
    """A database failure anywhere in `action` is 503 database_unavailable, not a 500."""
    try:
        yield
    except DatabaseError:
        logger.exception("database unavailable during %s", action)
        raise errors.Unavailable("the database is unavailable; retry shortly", code="database_unavailable") from None


def _release_pooled_connection() -> None:
    """Give this thread's pooled database connection back before the upstream call, which may
    take seconds: hundreds of threads share a pool of a few connections, and a thread that only
    looked up a server must not hold one while it waits on a tool (measured: 1,000 concurrent
    2-second calls timed out waiting for the pool). The evidence write takes one again."""
    if getattr(connection, "pool", None) is not None and connection.connection is not None and not connection.in_atomic_block:
        connection.close()


def _invoke_recorded(attempt: _Attempt, *, server_ref: str, arguments: dict, timeout_ms: int | None, deadline_s: float | None) -> InvocationResult:
    try:
        with session_slot(sid=attempt.claims.sid):
            return _authorized_call(attempt, server_ref=server_ref, arguments=arguments, timeout_ms=timeout_ms, deadline_s=deadline_s)
    except errors.GatewayError as exc:
        status = "denied" if isinstance(exc, errors.Forbidden) or getattr(exc, "decision", None) else "error"
        attempt.record(status=status, error_code=exc.code)
        if attempt.receipt:
            exc.receipt = attempt.receipt
        raise


def _authorized_call(attempt: _Attempt, *, server_ref: str, arguments: dict, timeout_ms: int | None, deadline_s: float | None) -> InvocationResult:
    claims = attempt.claims
    denial = policy.builtin_check_scope(session_scopes=claims.scopes)
    if denial:
        raise _denied(attempt.decide(denial), attempt.receipt)

    snapshot, spec = server_spec_get(ref=server_ref)
    attempt.server_id, attempt.server_name = str(snapshot.id), snapshot.name
    if not snapshot.enabled:
        raise errors.Unavailable(f"server {snapshot.name!r} is disabled", code="server_disabled")

    denial = policy.builtin_check_server_and_tool(
        session_scopes=claims.scopes, session_servers=claims.servers, server_id=str(snapshot.id), server_name=snapshot.name,
        server_scopes=list(snapshot.scopes), tool_allow=list(snapshot.tool_allow), tool_deny=list(snapshot.tool_deny), tool=attempt.tool,
    )
    if denial:
        raise _denied(attempt.decide(denial), attempt.receipt)

    tool_def = _find_tool(server=snapshot, tool=attempt.tool)
    _validate_arguments(server_id=str(snapshot.id), tool=tool_def, arguments=arguments)
    timeout_s = _timeout_seconds(spec=spec, timeout_ms=timeout_ms, deadline_s=deadline_s)

    try:
        decision = attempt.decide(policy.policy_final_decide(policy_input=attempt.policy_input()))
    except policy.PolicyUnavailable as exc:
        attempt.decide(exc.decision)
        raise
    if not decision.allow:
        raise _denied(decision, attempt.receipt)

    _release_pooled_connection()
    result = get_client().call_tool(server=spec, name=attempt.tool, arguments=arguments, session_key=claims.sid, timeout_s=timeout_s)
    is_error = bool(result.get("isError"))
    row = attempt.record(status="success", result_digest=digest(result), is_error=is_error)
    return InvocationResult(
        invocation_id=str(row.id), server=snapshot.name, server_id=str(snapshot.id), tool=attempt.tool, result=result,
        is_error=is_error, latency_ms=round(row.latency_us / 1000, 3), evidence_seq=row.seq, evidence_hash=row.hash,
        receipt=attempt.receipt,
    )


def tools_for_session(*, token: str | None, run_id: str) -> list[dict]:
    """The tools this session may call: its servers (or all enabled ones), filtered by the same
    builtin rules the invoke path applies."""
    with _database_required("a tool listing"):
        return _tools_for_session(token=token, run_id=run_id)


def _tools_for_session(*, token: str | None, run_id: str) -> list[dict]:
    from mcp.services.registry import servers_for_session

    claims = session_authenticate(token=token, run_id=run_id)
    if policy.builtin_check_scope(session_scopes=claims.scopes) and "mcp:tools" not in claims.scopes:
        raise errors.Forbidden("session lacks scope 'mcp:invoke' or 'mcp:tools'", code="scope_missing")
    listed = []
    for snapshot in servers_for_session(server_ids=claims.servers):
        if not snapshot.enabled:
            continue
        try:
            tools = server_tools_cached(server=snapshot)
        except errors.GatewayError:
            continue  # an unreachable server has no callable tools right now
        for tool in tools:
            name = tool.get("name")
            if not isinstance(name, str):
                continue
            denial = policy.builtin_check_server_and_tool(
                session_scopes=claims.scopes, session_servers=claims.servers, server_id=str(snapshot.id), server_name=snapshot.name,
                server_scopes=list(snapshot.scopes), tool_allow=list(snapshot.tool_allow), tool_deny=list(snapshot.tool_deny), tool=name,
            )
            if denial is None:
                listed.append({
                    "server": snapshot.name, "server_id": str(snapshot.id), "name": name,
                    "description": tool.get("description", ""), "inputSchema": tool.get("inputSchema", {}),
                })
    return listed
