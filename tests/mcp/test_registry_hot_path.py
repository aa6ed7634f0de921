"""What the invoke core calls on every invocation (mcp.services.catalog): a server by id or name,
with no database query while the registry is unchanged, and every change seen (at once here,
within a second elsewhere). Its loads run on their own connections: a transactional database."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache

from maestro import bridge
from maestro.errors import NotFound
from mcp.services import catalog, registry

pytestmark = pytest.mark.django_db(transaction=True)


def resolve(ref: str):
    return bridge.run(catalog.server_resolve(ref=ref))


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The refs the catalog loaded from the database."""
    seen: list[str] = []
    real = catalog._load_server

    def counting(ref):
        seen.append(ref)
        return real(ref)

    monkeypatch.setattr(catalog, "_load_server", counting)
    return seen


@pytest.fixture
def server():
    return registry.server_create(data={
        "name": "hot", "url": "http://127.0.0.1:1/mcp", "scopes": ["search:read"], "tool_allow": ["search_*"], "tool_deny": ["search_admin"],
        "auth_headers": {"Authorization": "Bearer hot-secret"}, "timeout_ms": 1500,
    })


def test_resolves_by_id_or_name_to_a_snapshot_and_a_spec(server):
    by_name, spec = resolve("hot")
    by_id, _ = resolve(str(server.pk))
    assert by_name == by_id and by_name.id == str(server.pk) and by_name.scopes == ("search:read",)
    assert spec.url == server.url and spec.timeout_ms == 1500 and spec.headers == {"Authorization": "Bearer hot-secret"}
    assert spec.max_response_bytes > 0 and "hot-secret" not in repr(spec)


def test_a_repeated_look_up_costs_no_query(server, loads):
    resolve("hot")
    for _ in range(50):
        resolve("hot")
    assert loads == ["hot"]


def test_an_update_in_this_process_is_seen_at_once(server):
    resolve("hot")
    registry.server_update(server=server, data={"url": "http://127.0.0.1:2/mcp", "enabled": False})
    snapshot, spec = resolve("hot")
    assert spec.url == "http://127.0.0.1:2/mcp" and snapshot.enabled is False


def test_a_change_made_by_another_process_is_seen_after_the_version_check(server, monkeypatch):
    resolve("hot")
    # another worker changes the row and bumps the shared version; this process has not looked yet
    type(server).objects.filter(pk=server.pk).update(url="http://127.0.0.1:3/mcp")
    cache.set(registry.VERSION_KEY, uuid.uuid4().hex, None)
    assert resolve("hot")[1].url == "http://127.0.0.1:1/mcp"  # within the check interval
    monkeypatch.setattr(catalog, "VERSION_CHECK_SECONDS", 0.0)
    assert resolve("hot")[1].url == "http://127.0.0.1:3/mcp"


def test_a_deleted_server_is_not_found(server):
    resolve("hot")
    registry.server_delete(server=server)
    with pytest.raises(NotFound):
        resolve("hot")


@pytest.mark.parametrize("ref", ["", "nope", str(uuid.uuid4()), "bad\x00ref", "x" * 65])
def test_unknown_refs_are_not_found(ref):
    with pytest.raises(NotFound):
        resolve(ref)


@pytest.mark.parametrize(
    "tool, allowed",
    [("search_web", True), ("search_admin", False), ("delete_all", False), ("search_", True)],
)
def test_tool_allow_and_deny_globs(server, tool, allowed):
    snapshot, _ = resolve("hot")
    assert registry.tool_allowed(server=snapshot, tool_name=tool) is allowed


def test_an_empty_allow_list_allows_everything_but_the_denied(server):
    registry.server_update(server=server, data={"tool_allow": [], "tool_deny": ["rm*"]})
    snapshot, _ = resolve("hot")
    assert registry.tool_allowed(server=snapshot, tool_name="anything")
    assert not registry.tool_allowed(server=snapshot, tool_name="rm_rf")


def test_servers_for_session_are_the_named_ones_or_all(server):
    other = registry.server_create(data={"name": "other", "url": "http://127.0.0.1:4/mcp"})
    named = registry.servers_for_session(server_ids=[str(other.pk), str(uuid.uuid4())])
    everyone = registry.servers_for_session(server_ids=[])
    assert [s.name for s in named] == ["other"]
    assert [s.name for s in everyone] == ["hot", "other"]


def test_an_edit_does_not_overwrite_a_health_result_stored_meanwhile(server):
    # given an edit started from a copy read before a probe stored its result
    type(server).objects.filter(pk=server.pk).update(health_status="healthy", health_latency_ms=4.2)
    # when the edit is saved
    registry.server_update(server=server, data={"description": "edited"})
    # then both the edit and the probe's result are kept
    fresh = type(server).objects.get(pk=server.pk)
    assert (fresh.description, fresh.health_status, fresh.health_latency_ms) == ("edited", "healthy", 4.2)


def test_editing_a_server_deleted_meanwhile_is_not_found(server):
    type(server).objects.filter(pk=server.pk).delete()
    with pytest.raises(NotFound):
        registry.server_update(server=server, data={"description": "too late"})
