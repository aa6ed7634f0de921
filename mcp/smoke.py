"""The operator one-pager's smoke steps, run over HTTP against a live deployment (`manage.py
mcp_smoke`): the same requests an operator would send with curl, each timed and checked.

`smoke_run` registers a throwaway server for `upstream` (or uses a registered `server`), lists,
probes it, opens a session, invokes a tool, revokes the session, checks that the revoked token is
refused and that the run's evidence chain verifies, then removes what it created (also after a
failure). It stops at the first failed step. `smoke_disabled_run` is the rollback drill: with
MAESTRO_MCP_ENABLED=false every MCP route answers 404 while liveness and readiness still answer.

Nothing secret is reported: not the API key, not the session token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import httpx

API = "/api/maestro/v1"
SMOKE_TEXT = "maestro smoke"
SESSION_TTL_SECONDS = 300


@dataclass
class Step:
    step: str
    result: str  # "ok", "fail" or "skip"
    ms: float
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SmokeReport:
    url: str
    run_id: str | None
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.result != "fail" for step in self.steps)

    @property
    def failed(self) -> Step | None:
        return next((step for step in self.steps if step.result == "fail"), None)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "url": self.url, "run_id": self.run_id, "steps": [step.as_dict() for step in self.steps]}


class StepFailed(Exception):
    """A step's check failed; the message is the reason shown to the operator."""


class _Skipped(Exception):
    pass


def _expect(response: httpx.Response, status: int) -> dict:
    if response.status_code != status:
        raise StepFailed(f"{response.request.method} {response.request.url.path} answered {response.status_code}, expected {status}: {_reason(response)}")
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        raise StepFailed(f"{response.request.method} {response.request.url.path} answered {status} without JSON") from None


def _reason(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.text[:120].strip() or "(empty body)"
    return f"{error.get('code', '?')}: {error.get('message', '')}"[:300]


def _arguments_for(schema: dict) -> dict | None:
    """Minimal arguments satisfying the required properties of a tool's inputSchema, when they
    are all plain scalars; None otherwise."""
    properties = schema.get("properties") or {}
    arguments: dict = {}
    for name in schema.get("required") or []:
        kind = (properties.get(name) or {}).get("type")
        if kind == "string":
            arguments[name] = SMOKE_TEXT
        elif kind in ("number", "integer"):
            arguments[name] = 1
        elif kind == "boolean":
            arguments[name] = True
        else:
            return None
    return arguments


class _Runner:
    def __init__(self, report: SmokeReport, on_step: Callable[[Step], None]):
        self.report = report
        self.on_step = on_step

    def run(self, name: str, action: Callable[[], str]) -> bool:
        started = time.perf_counter()
        try:
            result, detail = "ok", action()
        except _Skipped as exc:
            result, detail = "skip", str(exc)
        except StepFailed as exc:
            result, detail = "fail", str(exc)
        except httpx.HTTPError as exc:
            result, detail = "fail", f"{type(exc).__name__}: {exc}"[:300]
        step = Step(name, result, round((time.perf_counter() - started) * 1000, 1), detail)
        self.report.steps.append(step)
        self.on_step(step)
        return result != "fail"


@dataclass
class _State:
    server_id: str | None = None
    server_name: str | None = None
    created_server: bool = False
    tool: str | None = None
    arguments: dict | None = None
    sid: str | None = None
    token: str | None = None
    revoked: bool = False
    invocations: int = 0


def smoke_run(
    *, url: str, api_key: str, on_step: Callable[[Step], None], upstream: str | None = None, server: str | None = None,
    tool: str | None = None, arguments: dict | None = None, run_id: str | None = None, timeout: float = 15.0,
) -> SmokeReport:
    run_id = run_id or f"smoke-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    report = SmokeReport(url=url, run_id=run_id)
    runner = _Runner(report, on_step)
    state = _State(tool=tool, arguments=arguments)
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers={"X-API-Key": api_key}, follow_redirects=False) as http:
        run = f"{API}/runs/{run_id}/mcp"

        def liveness() -> str:
            _expect(http.get("/api/health"), 200)
            return "GET /api/health 200"

        def readiness() -> str:
            body = _expect(http.get("/api/ready"), 200)
            return ", ".join(f"{name} {check['status']}" for name, check in sorted(body.get("checks", {}).items()))

        def create_server() -> str:
            if upstream:
                name = f"smoke-{secrets.token_hex(4)}"
                body = _expect(http.post(f"{API}/mcp/servers", json={"name": name, "url": upstream, "description": "mcp_smoke (temporary)"}), 201)
                state.server_id, state.server_name, state.created_server = body["id"], body["name"], True
                return f"{name} -> {upstream}"
            if server:
                body = _expect(http.get(f"{API}/mcp/servers/{server}"), 200)
                state.server_id, state.server_name = body["id"], body["name"]
                return f"using registered server {body['name']}"
            raise _Skipped("no --upstream or --server: server steps skipped")

        def list_servers() -> str:
            params = {"search": state.server_name, "limit": 50} if state.server_name else {"limit": 50}
            body = _expect(http.get(f"{API}/mcp/servers", params=params), 200)
            names = [item["name"] for item in body.get("results", [])]
            if state.server_name and state.server_name not in names:
                raise StepFailed(f"{state.server_name} is not in the list")
            return f"{body.get('count', len(names))} server(s) listed"

        def health() -> str:
            if not state.server_id:
                raise _Skipped("no server")
            body = _expect(http.get(f"{API}/mcp/servers/{state.server_id}/health"), 200)
            return f"{body.get('status')}, protocol {body.get('protocol_version')}, {body.get('latency_ms')} ms"

        def pick_tool() -> str:
            if not state.server_id:
                raise _Skipped("no server")
            tools = _expect(http.get(f"{API}/mcp/servers/{state.server_id}/tools"), 200).get("tools", [])
            by_name = {item["name"]: item for item in tools}
            if state.tool:
                if state.tool not in by_name:
                    raise StepFailed(f"the server has no tool {state.tool!r}")
                candidates = [by_name[state.tool]]
            else:
                candidates = sorted(tools, key=lambda item: item["name"] != "echo")
            for candidate in candidates:
                filled = state.arguments if state.arguments is not None else _arguments_for(candidate.get("inputSchema") or {})
                if filled is not None:
                    state.tool, state.arguments = candidate["name"], filled
                    return f"{len(tools)} tool(s); calling {state.tool}"
            raise StepFailed("no tool whose required arguments are plain values: give --tool and --arguments")

        def create_session() -> str:
            body = {"scopes": ["mcp:invoke"], "ttl_seconds": SESSION_TTL_SECONDS}
            if state.server_id:
                body["servers"] = [state.server_id]
            answer = _expect(http.post(f"{run}/sessions", json=body), 201)
            state.sid, state.token = answer["sid"], answer["token"]
            return f"run {run_id}, expires {answer['expires_at']}"

        def invoke_tool() -> str:
            if not state.tool:
                raise _Skipped("no server")
            response = http.post(
                f"{run}/invoke", json={"server": state.server_id, "tool": state.tool, "arguments": state.arguments},
                headers={"Authorization": f"Bearer {state.token}"},
            )
            state.invocations += 1
            body = _expect(response, 200)
            if not response.headers.get("x-ig-policy-receipt"):
                raise StepFailed("the answer has no x-ig-policy-receipt header")
            return f"{state.tool}: isError={body['result'].get('isError', False)}, {body['latency_ms']} ms, evidence seq {body['evidence']['seq']}"

        def revoke_session() -> str:
            _expect(http.delete(f"{run}/sessions/{state.sid}"), 204)
            state.revoked = True
            return "204"

        def revoked_token_refused() -> str:
            response = http.post(
                f"{run}/invoke", json={"server": state.server_id or "none", "tool": state.tool or "none", "arguments": {}},
                headers={"Authorization": f"Bearer {state.token}"},
            )
            if response.status_code != 401 or _reason(response).split(":")[0] != "session_revoked":
                raise StepFailed(f"the revoked token got {response.status_code} {_reason(response)}, expected 401 session_revoked")
            return "401 session_revoked"

        def evidence() -> str:
            body = _expect(http.get(f"{run}/evidence"), 200)
            if body.get("chain") != "valid":
                raise StepFailed(f"evidence chain {body.get('chain')}: {body.get('verification')}")
            if body.get("count") != state.invocations:
                raise StepFailed(f"{body.get('count')} evidence row(s) for {state.invocations} invocation(s)")
            return f"chain valid, {body.get('count')} row(s)"

        steps = [
            ("liveness", liveness), ("readiness", readiness), ("create server", create_server), ("list servers", list_servers),
            ("server health", health), ("server tools", pick_tool), ("create session", create_session), ("invoke tool", invoke_tool),
            ("revoke session", revoke_session), ("revoked token refused", revoked_token_refused), ("evidence chain", evidence),
        ]
        try:
            for name, action in steps:
                if not runner.run(name, action):
                    break
        finally:
            _cleanup(http, runner, state, run)
    return report


def _cleanup(http: httpx.Client, runner: _Runner, state: _State, run: str) -> None:
    """Remove what the run created, whether it passed or not (the evidence rows stay: they are evidence)."""

    def revoke() -> str:
        _expect(http.delete(f"{run}/sessions/{state.sid}"), 204)
        return "session revoked"

    def delete() -> str:
        _expect(http.delete(f"{API}/mcp/servers/{state.server_id}"), 204)
        return f"{state.server_name} deleted"

    if state.sid and not state.revoked:
        runner.run("cleanup: revoke session", revoke)
    if state.created_server:
        runner.run("cleanup: delete server", delete)


DISABLED_ROUTES = (  # (step, method, path)
    ("absent: whoami", "GET", f"{API}/whoami"),
    ("absent: servers", "GET", f"{API}/mcp/servers"),
    ("absent: sessions", "POST", f"{API}/runs/smoke-disabled/mcp/sessions"),
    ("absent: invoke", "POST", f"{API}/runs/smoke-disabled/mcp/invoke"),
    ("absent: evidence", "GET", f"{API}/runs/smoke-disabled/mcp/evidence"),
)


def smoke_disabled_run(*, url: str, on_step: Callable[[Step], None], timeout: float = 15.0) -> SmokeReport:
    """The rollback drill: MCP routes absent (404), liveness and readiness still 200."""
    report = SmokeReport(url=url, run_id=None)
    runner = _Runner(report, on_step)
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, follow_redirects=False) as http:

        def answers(method: str, path: str, status: int) -> Callable[[], str]:
            def check() -> str:
                response = http.request(method, path, json={} if method == "POST" else None)
                if response.status_code != status:
                    raise StepFailed(f"{method} {path} answered {response.status_code}, expected {status}")
                return f"{method} {path} {status}"

            return check

        steps = [("liveness", answers("GET", "/api/health", 200)), ("readiness", answers("GET", "/api/ready", 200))]
        steps += [(name, answers(method, path, 404)) for name, method, path in DISABLED_ROUTES]
        for name, action in steps:
            if not runner.run(name, action):
                break
    return report
