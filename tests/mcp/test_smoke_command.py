"""`manage.py mcp_smoke` against a live gateway (the web door as deployed) and a real SDK upstream:
the one-pager's smoke steps pass, a failure stops the run with its reason and still cleans up,
and the rollback drill tells a disabled gateway from an enabled one."""

from __future__ import annotations

import json

import pytest

from mcp.models import Invocation, McpServer
from tests.conftest import make_key
from tests.support.processes import WebServer, project_env, run_manage
from tests.support.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = [
    "liveness", "readiness", "create server", "list servers", "server health", "server tools", "create session",
    "invoke tool", "revoke session", "revoked token refused", "evidence chain", "cleanup: delete server",
]


@pytest.fixture(scope="module")
def gateway(django_db_setup):
    with WebServer(project_env(WEB_CONCURRENCY="1")) as web:
        yield web


@pytest.fixture(scope="module")
def disabled_gateway(django_db_setup):
    with WebServer(project_env(WEB_CONCURRENCY="1", MAESTRO_MCP_ENABLED="false")) as web:
        yield web


def smoke(*args: str):
    return run_manage("mcp_smoke", *args)


def rows(stdout: str) -> dict[str, str]:
    """step name -> result column of the printed table (header and summary lines left out)."""
    table = {}
    for line in stdout.splitlines():
        name, result = line[:30].strip(), line[31:37].strip()
        if result in {"ok", "FAIL", "skip"}:
            table[name] = result
    return table


def test_the_smoke_steps_pass_against_a_live_gateway_and_leave_nothing_behind(gateway, upstream):
    key = make_key(["admin:mcp"])
    # When an operator runs the smoke against the live gateway with an upstream to register
    result = smoke("--url", gateway.base_url, "--api-key", key, "--upstream", upstream.url(), "--run-id", "smoke-ok")
    # Then every step passes, in the one-pager's order, and it says so
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert list(table) == STEPS
    assert set(table.values()) == {"ok"}
    assert "smoke passed" in result.stdout
    # And it called the tool for real (echo, one evidence row) and removed the server it registered
    (row,) = Invocation.objects.filter(run_id="smoke-ok")
    assert (row.tool, row.status) == ("echo", "success")
    assert not McpServer.objects.filter(name__startswith="smoke-").exists()
    # And the key never appears in what it printed
    assert key not in result.stdout + result.stderr


def test_json_report_for_ci(gateway, upstream):
    key = make_key(["admin:mcp"])
    result = smoke("--url", gateway.base_url, "--api-key", key, "--upstream", upstream.url(), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["run_id"].startswith("smoke-")
    assert [step["step"] for step in report["steps"]] == STEPS
    assert all(step["result"] == "ok" and step["ms"] >= 0 for step in report["steps"])
    assert "eyJ" not in result.stdout  # no session token (a JWT) in the report


def test_a_failed_step_stops_the_run_with_its_reason_and_still_cleans_up(gateway):
    key = make_key(["admin:mcp"])
    # Given an upstream URL where nothing listens
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    result = smoke("--url", gateway.base_url, "--api-key", key, "--upstream", dead, "--json")
    # Then the run fails at the health probe, says why, goes no further, and removes its server
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [step["step"] for step in report["steps"]] == ["liveness", "readiness", "create server", "list servers", "server health", "cleanup: delete server"]
    assert report["steps"][4]["result"] == "fail" and "503" in report["steps"][4]["detail"] and "unreachable" in report["steps"][4]["detail"]
    assert report["steps"][5]["result"] == "ok"
    assert "smoke failed at 'server health'" in result.stderr
    assert not McpServer.objects.filter(name__startswith="smoke-").exists()


def test_a_wrong_key_fails_at_the_first_authenticated_step(gateway, upstream):
    result = smoke("--url", gateway.base_url, "--api-key", "mk_not-a-key", "--upstream", upstream.url())
    assert result.returncode == 1
    table = rows(result.stdout)
    assert table["liveness"] == "ok" and table["create server"] == "FAIL" and "list servers" not in table
    assert "401" in result.stderr


def test_the_rollback_drill_passes_only_when_mcp_is_disabled(gateway, disabled_gateway):
    # Given MAESTRO_MCP_ENABLED=false and a restart: the drill passes (routes 404, health answers)
    disabled = smoke("--url", disabled_gateway.base_url, "--expect-disabled")
    assert disabled.returncode == 0, disabled.stdout + disabled.stderr
    table = rows(disabled.stdout)
    assert table["liveness"] == table["readiness"] == table["absent: invoke"] == "ok"
    assert list(table) == ["liveness", "readiness", "absent: whoami", "absent: servers", "absent: sessions", "absent: invoke", "absent: evidence"]
    # And against a gateway that still has MCP enabled it fails, naming the route that answered
    enabled = smoke("--url", gateway.base_url, "--expect-disabled", "--json")
    assert enabled.returncode == 1
    failed = json.loads(enabled.stdout)["steps"][-1]
    assert failed["result"] == "fail" and "answered 401, expected 404" in failed["detail"]


@pytest.mark.parametrize("args, message", [
    (["--url", "ftp://x"], "--url: expected an http:// or https:// URL"),
    (["--url", "http://127.0.0.1:1"], "--api-key is required"),
    (["--url", "http://127.0.0.1:1", "--api-key", "k", "--arguments", "[1]"], "--arguments: expected a JSON object"),
])
def test_bad_options_are_one_clear_line(args, message):
    result = smoke(*args)
    assert result.returncode == 1 and message in result.stderr
