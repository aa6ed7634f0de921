"""Slow tools and a small database pool: a call holds no pooled connection while it waits upstream."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import RUN, evidence, session_token
from tests.support.processes import WebServer, project_env


@pytest.mark.django_db(transaction=True)
def test_twenty_slow_calls_on_a_cold_worker_share_a_pool_of_two_connections(admin_api, sdk):
    # Given a fresh web worker (nothing cached: every call looks its server up in the database)
    # whose pool has two connections, and a tool that takes a second
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token()
    env = project_env(WEB_CONCURRENCY="1", DATABASE_POOL_SIZE="2", MCP_SESSION_MAX_IN_FLIGHT="100")
    with WebServer(env) as web:
        url = f"{web.base_url}/api/maestro/v1/runs/{RUN}/mcp/invoke"
        body = {"server": "modern", "tool": "sleep", "arguments": {"seconds": 1.0}}
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)) as http:
            # When twenty calls arrive at once
            with ThreadPoolExecutor(max_workers=20) as pool:
                answers = list(pool.map(lambda _: http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}), range(20)))
        log = web.output()
    # Then all twenty succeed and are recorded; none waited for a connection held during a tool call
    assert [a.status_code for a in answers] == [200] * 20, log[-2000:]
    assert len(evidence()) == 20
    assert "couldn't get a connection" not in log
