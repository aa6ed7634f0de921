"""A gateway deployment for fault tests, driven from outside as a run and an operator drive it,
and the three checks every fault scenario ends with: the answers (never a 500, always the one
error shape), the evidence (every answer that should have left a row has it, the chain verifies
from the exported file) and recovery (calls succeed again, same processes)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import httpx
import redis

from maestro.aredis import REVOCATION_WATCH_NAME
from mcp.services.evidence_file import evidence_file_verify
from tests.support.processes import WebServer, project_env, run_manage
from tests.support.services import PostgresServer, RedisServer

API = "/api/maestro/v1"

# Answers given before the token is verified, or whose row could not be written: no row.
NO_ROW = {
    "missing_token", "malformed_token", "invalid_signature", "invalid_token", "token_expired", "session_revoked",
    "run_mismatch", "revocation_unavailable", "evidence_unavailable", "invalid_json", "invalid_server", "invalid_tool",
}


@dataclass
class Stack:
    """PostgreSQL (durable: tests stop it under a running gateway) and Redis of their own, migrated,
    with an operator key; every gateway of the package runs against them."""

    postgres: PostgresServer
    redis: RedisServer
    key: str = ""
    workers: int = 0  # web workers of the gateways running now, each following revocations

    def following(self) -> int:
        """Gateway workers whose revocation watch is subscribed and past its resync (pinging)."""
        clients = redis.Redis.from_url(self.redis.url, socket_timeout=2).client_list(_type="pubsub")
        return sum(1 for client in clients if client.get("name") == REVOCATION_WATCH_NAME and client.get("cmd") == "ping")

    def all_following(self) -> bool:
        return self.following() == self.workers

    def env(self, **overrides: str | None) -> dict[str, str]:
        return project_env(DATABASE_URL=self.postgres.url, REDIS_URL=self.redis.url, **overrides)

    def prepare(self) -> "Stack":
        env = self.env()
        migrated = run_manage("migrate", "--noinput", "-v0", env=env, timeout=120)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        created = run_manage("mcp_apikey", "create", "--name", "faults", "--scopes", "admin:mcp", env=env)
        assert created.returncode == 0, created.stderr[-2000:]
        self.key = created.stdout.strip().splitlines()[-1].strip()
        return self

    def restart_redis(self) -> None:
        """Redis back on its port, empty (no persistence: it lost everything)."""
        self.redis.start()


class Gateway:
    """One web process (the Procfile's `python -m maestro.web`) of the stack, with domain helpers."""

    def __init__(self, stack: Stack, *, workers: int = 2, **env: str | None) -> None:
        self.stack = stack
        self.workers = workers
        self.web = WebServer(stack.env(WEB_CONCURRENCY=str(workers), **env))

    def __enter__(self) -> "Gateway":
        self.web.__enter__()
        self.stack.workers += self.workers
        return self

    def __exit__(self, *exc) -> None:
        self.stack.workers -= self.workers
        self.web.__exit__(*exc)

    def url(self, path: str) -> str:
        return self.web.base_url + API + path

    def operator(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, self.url(path), headers={"X-API-Key": self.stack.key}, timeout=30, **kwargs)

    def register(self, name: str, url: str, **fields) -> None:
        answer = self.operator("POST", "/mcp/servers", json={"name": name, "url": url, **fields})
        assert answer.status_code in (201, 409), answer.text  # 409: an earlier scenario registered it

    def open_session(self, run: str, **body) -> dict:
        body.setdefault("scopes", ["mcp:invoke", "mcp:tools"])
        answer = self.operator("POST", f"/runs/{run}/mcp/sessions", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def revoke(self, run: str, sid: str) -> httpx.Response:
        return self.operator("DELETE", f"/runs/{run}/mcp/sessions/{sid}")

    def invoke(self, token: str, run: str, server: str, tool: str, arguments: dict | None = None, timeout: float = 30) -> httpx.Response:
        # A connection per call (Connection: close), so the kernel spreads calls over the workers.
        return httpx.post(
            self.url(f"/runs/{run}/mcp/invoke"), timeout=timeout,
            json={"server": server, "tool": tool, "arguments": arguments or {}},
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        )

    def tools(self, token: str, run: str) -> httpx.Response:
        return httpx.get(self.url(f"/runs/{run}/mcp/tools"), headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def export(self, run: str) -> list[bytes]:
        answer = self.operator("GET", f"/runs/{run}/mcp/evidence/export")
        assert answer.status_code == 200, answer.text
        return answer.content.splitlines()

    def log(self) -> str:
        return self.web.output()[-8000:]


def code_of(answer: httpx.Response) -> str:
    return answer.json()["error"]["code"] if answer.status_code != 200 else ""


def expected_row(answer: httpx.Response) -> tuple[str, str] | None:
    """The evidence row (status, error_code) an invoke answer must have left, or None."""
    if answer.status_code == 200:
        return ("success", "")
    code = code_of(answer)
    if code in NO_ROW:
        return None
    if answer.status_code == 403 or code == "policy_unavailable":
        return ("denied", code)
    return ("error", code)


@dataclass
class Ledger:
    """Every answer a scenario's client saw for one run, in the order it saw them."""

    run: str
    answers: list[httpx.Response] = field(default_factory=list)

    def add(self, answer: httpx.Response) -> httpx.Response:
        self.answers.append(answer)
        return answer

    def statuses(self) -> list[int]:
        return [a.status_code for a in self.answers]


def assert_clean(answer: httpx.Response, *, allowed: set[int]) -> None:
    """An answer a client can act on: one of the statuses the fault allows (never a 500), and
    every error in the one shape, without a traceback."""
    assert answer.status_code in allowed, f"{answer.status_code} {answer.text[:500]}"
    assert "Traceback" not in answer.text
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert error["code"] and error["message"], answer.text


def assert_evidence_complete(gateway: Gateway, ledger: Ledger, *, ordered: bool = True) -> list[dict]:
    """The run's exported chain verifies from #1 with no gap or fork, and holds exactly the rows
    its answers promise (in order when the calls were made one after another)."""
    import json

    lines = gateway.export(ledger.run)
    run_id, outcome = evidence_file_verify(lines=lines)
    rows = [json.loads(line) for line in lines if line.strip()]
    assert outcome["chain"] == "valid", outcome
    assert outcome["length"] == len(rows) and [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    got = [(r["status"], r["error_code"]) for r in rows]
    expected = [row for row in map(expected_row, ledger.answers) if row is not None]
    if ordered:
        assert got == expected, f"rows {got}\nanswers {[(a.status_code, code_of(a)) for a in ledger.answers]}"
    else:
        assert Counter(got) == Counter(expected), f"rows {Counter(got)}\nanswers {Counter(expected)}"
    return rows


def upstream_calls(upstream) -> int:
    """tools/call requests an SDK upstream has received (tests/upstreams/sdk_server.py's /stats)."""
    return httpx.get(upstream.url("/stats"), timeout=5).json().get("tools/call", 0)

