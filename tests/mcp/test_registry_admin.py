"""Django admin as the registry console: list, filters, search, actions, write-only secrets."""

from __future__ import annotations

import pytest

from mcp.models import McpServer
from mcp.secrets import decrypt_headers
from maestro import bridge
from mcp.services import catalog, registry
from tests.mcp.conftest import SDK_TOOL_COUNT
from tests.support.services import free_port

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/mcp/mcpserver/"
SECRET = "Bearer admin-typed-secret-42"


def add_form(**overrides) -> dict:
    form = {
        "name": "from-admin", "url": "http://127.0.0.1:1/mcp", "description": "", "enabled": "on", "timeout_ms": "2000",
        "scopes": "", "tags": "prod, search", "tool_allow": "", "tool_deny": "", "auth_headers": "", "clear_auth_headers": "",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def make(name: str, url: str, **fields) -> McpServer:
    return registry.server_create(data={"name": name, "url": url, **fields})


def run_action(admin_client, action: str, *servers: McpServer):
    form = {"action": action, "index": 0, "select_across": 0, "_selected_action": [str(s.pk) for s in servers]}
    return admin_client.post(CHANGELIST, form, follow=True)


def test_the_list_shows_health_badges_tags_and_filters(admin_client):
    make("alpha", "http://127.0.0.1:1/mcp", tags=["prod"])
    make("beta", "http://127.0.0.1:2/mcp", tags=["dev"])
    McpServer.objects.filter(name="alpha").update(health_status="healthy", health_latency_ms=3.2)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "alpha" in page and "beta" in page
    assert ">healthy</span>" in page and ">unknown</span>" in page
    filtered = admin_client.get(CHANGELIST, {"tag": "prod"}).content.decode()
    assert "alpha" in filtered and "127.0.0.1:2" not in filtered
    searched = admin_client.get(CHANGELIST, {"q": "bet"}).content.decode()
    assert "127.0.0.1:2" in searched and "127.0.0.1:1/mcp" not in searched


def test_adding_a_server_encrypts_its_headers_and_never_shows_them(admin_client):
    response = admin_client.post(f"{CHANGELIST}add/", add_form(auth_headers=f"Authorization: {SECRET}\nX-Tenant: acme"))
    assert response.status_code == 302, response.content.decode()[:2000]
    server = McpServer.objects.get(name="from-admin")
    assert server.tags == ["prod", "search"] and server.auth_header_names == ["Authorization", "X-Tenant"]
    assert decrypt_headers(server.auth_headers_encrypted, server_id=server.id)["Authorization"] == SECRET
    change = admin_client.get(f"{CHANGELIST}{server.pk}/change/").content.decode()
    assert "Authorization, X-Tenant (values hidden)" in change and SECRET not in change
    assert "admin-typed-secret" not in change


def test_saving_without_new_headers_keeps_them_and_clearing_removes_them(admin_client):
    server = make("keeper", "http://127.0.0.1:1/mcp", auth_headers={"Authorization": SECRET})
    kept = admin_client.post(f"{CHANGELIST}{server.pk}/change/", add_form(name="keeper", description="edited"))
    assert kept.status_code == 302
    server.refresh_from_db()
    assert server.description == "edited" and server.has_auth_headers
    cleared = admin_client.post(f"{CHANGELIST}{server.pk}/change/", add_form(name="keeper", clear_auth_headers="on"))
    assert cleared.status_code == 302
    server.refresh_from_db()
    assert not server.has_auth_headers and server.auth_header_names == []


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"auth_headers": f"Authorization {SECRET}"}, "write &#x27;Name: value&#x27;"),
        ({"auth_headers": "Content-Type: text/plain"}, "is set by the gateway itself"),
        ({"url": "ftp://127.0.0.1/mcp"}, "only http and https URLs are allowed"),
        ({"tags": "Not A Tag"}, "is not a valid entry"),
        ({"timeout_ms": "5"}, "greater than or equal to 100"),
    ],
)
def test_invalid_input_is_a_form_error_that_does_not_echo_secrets(admin_client, overrides, message):
    response = admin_client.post(f"{CHANGELIST}add/", add_form(**overrides))
    page = response.content.decode()
    assert response.status_code == 200 and message in page
    assert "admin-typed-secret" not in page
    assert not McpServer.objects.exists()


def test_a_duplicate_name_is_a_form_error(admin_client):
    make("taken", "http://127.0.0.1:1/mcp")
    response = admin_client.post(f"{CHANGELIST}add/", add_form(name="taken"))
    assert response.status_code == 200 and "already exists" in response.content.decode()


@pytest.mark.django_db(transaction=True)  # the probes run in threads, which must see the rows
def test_check_health_now_probes_the_selected_servers(admin_client, sdk):
    good = make("good", sdk.legacy_sse.url())
    bad = make("bad", f"http://127.0.0.1:{free_port()}/mcp", timeout_ms=500)
    page = run_action(admin_client, "check_health", good, bad).content.decode().lower()  # admin capitalizes messages
    assert "healthy: good" in page and "not healthy: bad (unreachable)" in page
    assert dict(McpServer.objects.values_list("name", "health_status")) == {"good": "healthy", "bad": "unreachable"}


def test_refresh_tools_stores_them_and_shows_them_read_only(admin_client, sdk):
    server = make("tooly", sdk.modern_json.url())
    broken = make("broken", f"http://127.0.0.1:{free_port()}/mcp", timeout_ms=500)
    page = run_action(admin_client, "refresh_tools", server, broken).content.decode().lower()
    assert f"tooly: {SDK_TOOL_COUNT} tools" in page and "broken: cannot connect" in page
    change = admin_client.get(f"{CHANGELIST}{server.pk}/change/").content.decode()
    assert "<code>echo</code>" in change and "Echo the text back." in change
    assert 'name="tools_cache"' not in change  # shown, never editable


def resolve(ref: str):
    return bridge.run(catalog.server_resolve(ref=ref))


@pytest.mark.django_db(transaction=True)  # the catalog reads through its own connections
def test_enable_and_disable_actions(admin_client):
    one, two = make("one", "http://127.0.0.1:1/mcp"), make("two", "http://127.0.0.1:2/mcp")
    run_action(admin_client, "disable_servers", one, two)
    assert not McpServer.objects.filter(enabled=True).exists()
    snapshot, _ = resolve("one")
    assert snapshot.enabled is False  # the hot path saw the change at once
    run_action(admin_client, "enable_servers", one)
    assert dict(McpServer.objects.values_list("name", "enabled")) == {"one": True, "two": False}


@pytest.mark.django_db(transaction=True)
def test_deleting_in_the_admin_is_seen_by_the_hot_path(admin_client):
    server = make("short-lived", "http://127.0.0.1:1/mcp")
    resolve("short-lived")
    admin_client.post(f"{CHANGELIST}{server.pk}/delete/", {"post": "yes"})
    with pytest.raises(Exception) as caught:
        resolve("short-lived")
    assert getattr(caught.value, "code", None) == "server_not_found"
