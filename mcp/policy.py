"""Policy: the builtin rules, and OPA when OPA_URL is set.

The builtin rules always run (they are cheap and they are the gateway's own guarantees): the
session's scopes, its server list, the server's required scopes and its tool allow/deny globs.
When they allow and OPA is configured, OPA has the final word. Every decision, either way, comes
back as a `Decision` that the core turns into a signed receipt.

OPA input document (POST {OPA_URL}/v1/data/{OPA_POLICY_PATH} with {"input": ...}):
    {"subject": {"type": "session", "sid": ..., "run": ...},
     "run": ..., "session": {"sid": ..., "scopes": [...], "servers": [...]},
     "server": {"id": ..., "name": ..., "scopes": [...], "tags": [...]},
     "tool": ..., "arguments_digest": "<sha256 of canonical JSON arguments>", "transport": "http"|"grpc"|"mcp",
     "kind": "resource"|"prompt" (only for a resource read or a prompt get through the MCP endpoint;
     "tool" is then the resource URI or the prompt name)}
The result may be a boolean or {"allow": bool, "reason": str}; an undefined result denies.
"""

from __future__ import annotations

import fnmatch

import httpx
from django.conf import settings

from maestro import errors
from maestro.bridge import per_loop
from mcp.receipts import Decision
from sessions_app import scopes as S

BUILTIN_POLICY = "builtin/v1"


def _deny(code: str, reason: str) -> Decision:
    return Decision(allow=False, reason=reason, engine="builtin", policy=BUILTIN_POLICY, code=code)


def builtin_check_scope(*, session_scopes: frozenset[str]) -> Decision | None:
    """The first check: may this session invoke at all? None means 'no objection'."""
    if S.INVOKE not in session_scopes:
        return _deny("scope_missing", f"session lacks scope {S.INVOKE!r}")
    return None


def builtin_check_server(
    *, session_scopes: frozenset[str], session_servers: tuple[str, ...], server_id: str, server_name: str, server_scopes: list[str],
) -> Decision | None:
    """The server-level rules: the session's server list and the server's required scopes. Reading
    a resource or getting a prompt (the MCP endpoint) is checked by these; the tool globs below
    are about tools only."""
    if session_servers and server_id not in session_servers:
        return _deny("server_not_allowed", f"session may not use server {server_name!r}")
    missing = [scope for scope in server_scopes if scope not in session_scopes]
    if missing:
        return _deny("server_scope_missing", f"server {server_name!r} requires scope {missing[0]!r}")
    return None


def builtin_check_server_and_tool(
    *, session_scopes: frozenset[str], session_servers: tuple[str, ...], server_id: str, server_name: str,
    server_scopes: list[str], tool_allow: list[str], tool_deny: list[str], tool: str,
) -> Decision | None:
    denial = builtin_check_server(
        session_scopes=session_scopes, session_servers=session_servers, server_id=server_id, server_name=server_name, server_scopes=server_scopes,
    )
    if denial:
        return denial
    refusal = tool_filter_refusal(tool=tool, tool_allow=tool_allow, tool_deny=tool_deny)
    if refusal == "tool_denied":
        return _deny(refusal, f"tool {tool!r} is denied on server {server_name!r}")
    if refusal == "tool_not_allowed":
        return _deny(refusal, f"tool {tool!r} is not in server {server_name!r}'s allow list")
    return None


def tool_filter_refusal(*, tool: str, tool_allow, tool_deny) -> str | None:
    """A server's tool globs, the one copy of the rule (enforcement, tool listings and the registry
    API's `filtered_out` all use it): a deny match wins ("tool_denied"); a non-empty allow list
    must match ("tool_not_allowed"); None when the tool may be called."""
    if any(fnmatch.fnmatchcase(tool, pattern) for pattern in tool_deny):
        return "tool_denied"
    if tool_allow and not any(fnmatch.fnmatchcase(tool, pattern) for pattern in tool_allow):
        return "tool_not_allowed"
    return None


BUILTIN_ALLOW = Decision(allow=True, reason="builtin rules allow", engine="builtin", policy=BUILTIN_POLICY)


class PolicyUnavailable(errors.Unavailable):
    """The policy engine gave no clear answer: a deny, with the Decision to sign and record."""

    code = "policy_unavailable"

    def __init__(self, message: str, *, decision: Decision):
        super().__init__(message)
        self.decision = decision


def _opa_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=50, max_keepalive_connections=20))


_opa = per_loop(_opa_client)


async def opa_decide(*, policy_input: dict) -> Decision:
    """Ask OPA. Anything but a clear answer is a deny: raises PolicyUnavailable carrying the
    deny Decision, so the caller still issues a receipt and records evidence."""
    path = settings.OPA_POLICY_PATH
    policy = f"opa:{path}"
    url = f"{settings.OPA_URL.rstrip('/')}/v1/data/{path}"
    try:
        response = await _opa().post(url, json={"input": policy_input}, timeout=settings.OPA_TIMEOUT_MS / 1000)
        response.raise_for_status()
        body = response.json()
    except httpx.TimeoutException:
        raise _unavailable(policy, f"OPA did not answer within {settings.OPA_TIMEOUT_MS} ms") from None
    except httpx.HTTPStatusError as exc:
        raise _unavailable(policy, f"OPA answered HTTP {exc.response.status_code}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise _unavailable(policy, f"OPA unreachable: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise _unavailable(policy, "OPA answered something other than a JSON object")
    decision_id = body.get("decision_id")
    result = body.get("result")
    if isinstance(result, bool):
        allow, reason = result, ("allowed by OPA" if result else "denied by OPA")
    elif isinstance(result, dict) and isinstance(result.get("allow"), bool):
        allow = result["allow"]
        reason = str(result.get("reason") or ("allowed by OPA" if allow else "denied by OPA"))[:500]
    elif result is None:
        allow, reason = False, f"policy {path!r} is undefined in OPA"
    else:
        raise _unavailable(policy, "OPA result is neither a boolean nor {allow, reason}", decision_id)
    return Decision(allow=allow, reason=reason, engine="opa", policy=policy, code="" if allow else "policy_denied", decision_id=decision_id)


def _unavailable(policy: str, reason: str, decision_id: str | None = None) -> PolicyUnavailable:
    return PolicyUnavailable(
        f"policy engine unavailable: {reason}",
        decision=Decision(allow=False, reason=reason, engine="opa", policy=policy, code="policy_unavailable", decision_id=decision_id),
    )


async def policy_final_decide(*, policy_input: dict) -> Decision:
    if settings.OPA_URL:
        return await opa_decide(policy_input=policy_input)
    return BUILTIN_ALLOW
