"""The deployed web door (granian, pooled PostgreSQL connections, the WSGI fast path) while its
database restarts or goes away: calls recover on their own, and no call succeeds unrecorded."""

from __future__ import annotations

import httpx
import pytest

from tests.support.processes import WebServer, project_env, run_manage
from tests.support.services import PostgresServer, RedisServer

RUN = "run-restarts"


@pytest.fixture(scope="module")
def gateway(sdk):
    postgres, redis = PostgresServer(durable=True).start(), RedisServer().start()
    env = project_env(DATABASE_URL=postgres.url, REDIS_URL=redis.url, MCP_SESSIONS_PERSIST="true", WEB_CONCURRENCY="1")
    try:
        assert run_manage("migrate", "--noinput", env=env).returncode == 0
        created = run_manage("mcp_apikey", "create", "--name", "ops", "--scopes", "admin:mcp,mcp:sessions", env=env)
        key = created.stdout.strip().splitlines()[-1]
        with WebServer(env) as web:
            ops = httpx.Client(base_url=web.base_url, headers={"X-API-Key": key}, timeout=10)
            assert ops.post("/api/maestro/v1/mcp/servers", json={"name": "modern", "url": sdk.modern_json.url()}).status_code == 201
            opened = ops.post(f"/api/maestro/v1/runs/{RUN}/mcp/sessions", json={"scopes": ["mcp:invoke"]})
            assert opened.status_code == 201, opened.text
            yield web, postgres, ops, opened.json()["token"]
    finally:
        postgres.destroy()
        redis.destroy()


def invoke(web, token: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{web.base_url}/api/maestro/v1/runs/{RUN}/mcp/invoke", timeout=30,
        json={"server": "modern", "tool": "echo", "arguments": {"text": text}}, headers={"Authorization": f"Bearer {token}"},
    )


def test_calls_recover_after_a_database_restart_and_never_succeed_unrecorded(gateway):
    web, postgres, ops, token = gateway
    # Given a few calls that left pooled connections behind
    assert [invoke(web, token, f"before {n}").status_code for n in range(3)] == [200] * 3

    # When PostgreSQL restarts under the gateway, the next calls succeed on fresh connections
    postgres.stop()
    postgres.restart()
    assert [invoke(web, token, f"after restart {n}").status_code for n in range(3)] == [200] * 3

    # When it is down, a call cannot be recorded, so it does not succeed: 503, with a clear code
    postgres.stop()
    try:
        down = invoke(web, token, "while down")
        assert down.status_code == 503, web.output()[-3000:]
        assert down.json()["error"]["code"] == "evidence_unavailable"
    finally:
        postgres.restart()

    # Then every 200 has its row, in one unbroken chain
    assert invoke(web, token, "back").status_code == 200
    listed = ops.get(f"/api/maestro/v1/runs/{RUN}/mcp/evidence").json()
    assert listed["chain"] == "valid", listed.get("verification")
    assert listed["count"] == 7  # 3 + 3 + 1 successes; the failed call had nothing to write
