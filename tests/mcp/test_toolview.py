"""`tools_callable`: the tools a session may call, by the invoke path's own rules. Checked on
snapshots, and against what the deployed gateway actually does when each tool is called."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from mcp.services.toolview import tools_callable
from tests.conftest import make_key
from tests.support.processes import WebServer, project_env

TOOLS = [{"name": name, "description": f"{name} it", "inputSchema": {"type": "object"}} for name in ("echo", "add", "rm_rf")]


def snapshot(name="files", *, id="id-files", enabled=True, scopes=(), allow=(), deny=()):
    return SimpleNamespace(id=id, name=name, enabled=enabled, scopes=scopes, tool_allow=allow, tool_deny=deny)


def names(found: list[dict]) -> list[tuple[str, str]]:
    return [(tool["server"], tool["name"]) for tool in found]


def callable_by(*, scopes=("mcp:invoke",), servers=(), server_tools) -> list[tuple[str, str]]:
    return names(tools_callable(scopes=frozenset(scopes), servers=tuple(servers), server_tools=server_tools))


def test_every_tool_of_an_open_server_with_what_a_caller_needs():
    found = tools_callable(scopes=frozenset({"mcp:invoke"}), servers=(), server_tools=[(snapshot(), TOOLS)])
    assert found[0] == {"server": "files", "server_id": "id-files", "name": "echo", "description": "echo it", "inputSchema": {"type": "object"}}
    assert [tool["name"] for tool in found] == ["echo", "add", "rm_rf"]


def test_a_disabled_server_offers_nothing():
    assert callable_by(server_tools=[(snapshot(enabled=False), TOOLS)]) == []


def test_allow_and_deny_lists_filter_the_tools_and_a_deny_wins():
    assert callable_by(server_tools=[(snapshot(allow=("e*", "rm_*"), deny=("rm_*",)), TOOLS)]) == [("files", "echo")]


def test_a_server_that_requires_a_scope_is_open_only_to_sessions_holding_it():
    guarded = [(snapshot(scopes=("repo:read",)), TOOLS)]
    assert callable_by(server_tools=guarded) == []
    assert len(callable_by(scopes=("mcp:invoke", "repo:read"), server_tools=guarded)) == 3


def test_a_session_limited_to_some_servers_sees_only_theirs():
    both = [(snapshot("a", id="id-a"), TOOLS[:1]), (snapshot("b", id="id-b"), TOOLS[:1])]
    assert callable_by(servers=("id-b",), server_tools=both) == [("b", "echo")]
    assert callable_by(server_tools=both) == [("a", "echo"), ("b", "echo")], "no list: every server"


def test_entries_without_a_name_are_skipped():
    assert callable_by(server_tools=[(snapshot(), [{"description": "nameless"}, "junk", {"name": 5}, TOOLS[0]])]) == [("files", "echo")]


@pytest.mark.django_db(transaction=True)
def test_the_answer_matches_what_the_gateway_does_with_each_call(sdk):
    # Given a real upstream registered with an allow list, a deny list and a required scope
    api = httpx.Client(timeout=20, headers={"X-API-Key": make_key(["admin:mcp"])})
    with WebServer(project_env()) as web:
        base = f"{web.base_url}/api/maestro/v1"
        body = {"name": "files", "url": sdk.modern_json.url(), "tool_allow": ["ec*", "a*", "s*", "b*"], "tool_deny": ["b*"], "scopes": ["fs:read"]}
        server = api.post(f"{base}/mcp/servers", json=body).json()
        listed = api.get(f"{base}/mcp/servers/files/tools").json()["tools"]
        snap = snapshot("files", id=server["id"], scopes=("fs:read",), allow=tuple(body["tool_allow"]), deny=tuple(body["tool_deny"]))
        for scopes in (["mcp:invoke", "fs:read"], ["mcp:invoke"]):
            # When a session calls every listed tool through the gateway
            session = api.post(f"{base}/runs/run-tv/mcp/sessions", json={"scopes": scopes}).json()
            refused = set()
            for tool in listed:
                answer = httpx.post(
                    f"{base}/runs/run-tv/mcp/invoke", json={"server": "files", "tool": tool["name"], "arguments": {}},
                    headers={"Authorization": f"Bearer {session['token']}"}, timeout=20,
                )
                if answer.status_code == 403:
                    refused.add(tool["name"])
            # Then the tools the policy refused are exactly those tools_callable leaves out
            predicted = {tool["name"] for tool in tools_callable(scopes=frozenset(scopes), servers=(), server_tools=[(snap, listed)])}
            assert predicted == {tool["name"] for tool in listed} - refused
            assert predicted == ({"echo", "add", "sleep"} if "fs:read" in scopes else set())
    api.close()
