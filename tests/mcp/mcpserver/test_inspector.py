"""The MCP Inspector's CLI (npm @modelcontextprotocol/inspector, on Node 22) lists and calls tools
through the gateway, with the run's session token as its Authorization header."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import session_token
from tests.mcp.mcpserver.conftest import clean_env, mcp_url
from tests.support import node

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def inspector():
    try:
        return node.inspector_cli()
    except node.Unavailable as exc:
        pytest.fail(str(exc))


def run_inspector(inspector: list[str], url: str, token: str, *args: str) -> dict:
    result = subprocess.run(
        [*inspector, url, "--transport", "http", "--header", f"Authorization: Bearer {token}", *args],
        capture_output=True, text=True, timeout=120, env=clean_env(), cwd="/tmp",
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    return json.loads(result.stdout)


def test_the_inspector_cli_lists_and_calls_tools_through_the_gateway(web_door, admin_api, sdk, inspector):
    register(admin_api, name="alpha", url=sdk.modern_json.url())
    register(admin_api, name="beta", url=sdk.legacy_sse.url())
    token = session_token(run_id="run-inspector")
    url = mcp_url(web_door, "run-inspector")

    listed = run_inspector(inspector, url, token, "--method", "tools/list")
    names = [tool["name"] for tool in listed["tools"]]
    assert "alpha__echo" in names and "beta__add" in names and len(names) == 24

    called = run_inspector(inspector, url, token, "--method", "tools/call", "--tool-name", "beta__add", "--tool-arg", "a=2", "b=40")
    assert called["structuredContent"] == {"sum": 42} and called["isError"] is False
    assert called["_meta"]["io.maestro/evidence"]["seq"] == 1


def test_the_inspector_cli_is_refused_without_a_valid_token(web_door, admin_api, sdk, inspector):
    register(admin_api, name="alpha", url=sdk.modern_json.url())
    result = subprocess.run(
        [*inspector, mcp_url(web_door, "run-inspector"), "--transport", "http", "--header", "Authorization: Bearer not-a-token", "--method", "tools/list"],
        capture_output=True, text=True, timeout=120, env=clean_env(), cwd="/tmp",
    )
    # The 401 with its Bearer challenge sends the Inspector to OAuth, which a CLI run cannot do
    assert result.returncode != 0 and json.loads(result.stderr)["error"]["code"] == "auth_required"
