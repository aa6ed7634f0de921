"""`make bench`'s crowd scenario (10,000 calls held open at once), at a small size against a real
web door: the harness's client gets every answer, and every answer has its evidence row."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from mcp.models import Invocation
from tests.conftest import make_key
from tests.mcp.helpers import register
from tests.support.processes import PYTHON, ROOT, WebServer, project_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_crowd_harness_holds_its_calls_open_and_every_answer_is_recorded(admin_api, upstream):
    register(admin_api, name="bench-upstream", url=upstream.url())
    key = make_key(["admin:mcp"])
    with WebServer(project_env(WEB_CONCURRENCY="2", MCP_SESSION_MAX_IN_FLIGHT="1000")) as web:
        token = httpx.post(f"{web.base_url}/api/maestro/v1/runs/bench-crowd/mcp/sessions", json={"scopes": ["mcp:invoke"]},
                           headers={"X-API-Key": key}, timeout=10).json()["token"]
        body = json.dumps({"server": "bench-upstream", "tool": "sleep", "arguments": {"seconds": 0.5}})
        burst = subprocess.run(
            [PYTHON, "-m", "bench.http_burst", "--url", f"{web.base_url}/api/maestro/v1/runs/bench-crowd/mcp/invoke",
             "--body", body, "--header", f"Authorization: Bearer {token}", "-n", "60", "--timeout", "30"],
            cwd=ROOT, capture_output=True, text=True, timeout=90,
        )
    result = json.loads(burst.stdout.strip().splitlines()[-1])
    assert (result["ok"], result["codes"]) == (60, {"200": 60}), burst.stderr
    # All 60 were in flight together: the whole burst took about one call's time, not sixty
    assert result["wall_s"] < 5
    assert Invocation.objects.filter(run_id="bench-crowd", tool="sleep", status="success").count() == 60
