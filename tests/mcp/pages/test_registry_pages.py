"""`/mcp/registry` and a server's page: what they show, filters and paging, the actions against a
real upstream MCP server, the health poll, and a fixed number of queries per page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mcp.models import McpServer
from mcp.services import registry
from tests.mcp.evidence_rows import write_chain
from tests.mcp.pages.helpers import operator, server, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(operator(django_user_model, staff=True))
    return client


@pytest.fixture
def reader(client, django_user_model):
    client.force_login(operator(django_user_model, groups=("mcp:read",)))
    return client


def names_listed(response) -> list[str]:
    import re

    return re.findall(r'<td><a href="/mcp/registry/([^"]+)">', response.content.decode())


def checked(name: str, **fields) -> None:
    """A stored health result, as a probe leaves it."""
    McpServer.objects.filter(name=name).update(**fields)


def test_the_table_shows_each_server_at_a_glance(reader):
    server("github", url="https://mcp.example.com:8443/v1/mcp", tags=["prod", "scm"], enabled=False)
    checked("github", health_status="healthy", health_latency_ms=12.4, health_checked_at=timezone.now() - timedelta(minutes=2),
            health_protocol_version="2026-07-28", tools_cache=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    page = reader.get("/mcp/registry")
    row = text(page).split("github", 1)[1]
    assert row.startswith(" mcp.example.com:8443 prod scm disabled healthy 12 ms · checked 2 min ago 2026-07-28 3")
    assert 'title="https://mcp.example.com:8443/v1/mcp"' in page.content.decode(), "the full URL on hover"


def test_servers_are_sorted_by_name_and_paged(reader):
    for n in range(30):
        server(f"srv-{29 - n:02d}")
    first = reader.get("/mcp/registry")
    assert names_listed(first) == [f"srv-{n:02d}" for n in range(25)] and "page 1 of 2" in text(first)
    assert names_listed(reader.get("/mcp/registry?page=2")) == [f"srv-{n:02d}" for n in range(25, 30)]
    assert names_listed(reader.get("/mcp/registry?page=99")) == names_listed(reader.get("/mcp/registry?page=2")), "past the end: the last page"


@pytest.mark.parametrize("query, expected", [
    ("q=hub", ["github"]),
    ("tag=prod", ["github", "search"]),
    ("health=unreachable", ["files"]),
    ("enabled=false", ["search"]),
    ("tag=prod&enabled=true", ["github"]),
])
def test_search_and_filters_narrow_the_table(reader, query, expected):
    server("github", tags=["prod"])
    server("search", tags=["prod"], enabled=False)
    server("files", tags=["dev"])
    checked("files", health_status="unreachable")
    assert names_listed(reader.get(f"/mcp/registry?{query}")) == expected


@pytest.mark.parametrize("query, field", [("tag=NOT A TAG", "tag"), ("health=sick", "health"), ("enabled=maybe", "enabled"), ("q=" + "x" * 65, "q")])
def test_a_bad_filter_is_a_400_page_that_says_which(reader, query, field):
    response = reader.get(f"/mcp/registry?{query}")
    assert response.status_code == 400 and text(response).count(field) >= 1


def test_the_table_costs_the_same_queries_for_five_or_fifty_servers(reader, django_assert_max_num_queries):
    for n in range(5):
        server(f"few-{n}", tags=[f"t{n}"])
    with django_assert_max_num_queries(8) as few:
        reader.get("/mcp/registry")
    few = len(few.captured_queries)  # now: the next request clears Django's query log
    for n in range(45):
        server(f"many-{n:02d}", tags=[f"t{n}"])
    with django_assert_max_num_queries(few):
        reader.get("/mcp/registry")


def test_the_health_poll_answers_for_the_servers_asked_about(reader):
    a, b = server("alpha"), server("beta")
    checked("alpha", health_status="unhealthy", health_checked_at=timezone.now(), health_error="answered HTML")
    body = reader.get(f"/mcp/registry/_health?id={a.pk}&id=not-a-uuid").json()
    assert body == {"servers": [{"id": str(a.pk), "status": "unhealthy", "detail": "checked just now", "title": body["servers"][0]["title"]}]}
    assert body["servers"][0]["title"].endswith(": answered HTML")
    assert str(b.pk) not in str(body)


def test_a_server_page_shows_settings_but_never_auth_header_values(reader):
    server("github", auth_headers={"Authorization": "Bearer ghp_secret_value_123"}, tool_allow=["get_*"], tool_deny=["*_admin"], scopes=["repo:read"])
    page = reader.get("/mcp/registry/github")
    body = page.content.decode()
    assert "Authorization" in text(page) and "values are never shown" in text(page)
    assert "ghp_secret_value_123" not in body and "Bearer" not in body
    assert "get_* " in text(page) and "*_admin" in text(page) and "repo:read" in text(page)


def test_a_server_page_shows_the_last_health_error(reader):
    server("flaky")
    checked("flaky", health_status="unhealthy", health_error_code="upstream_not_mcp", health_error="server 'flaky' answered HTML",
            health_checked_at=timezone.now())
    assert "Error upstream_not_mcp server 'flaky' answered HTML" in text(reader.get("/mcp/registry/flaky"))


def test_a_server_page_lists_tools_with_schemas_and_what_the_lists_block(reader):
    server("files", tool_deny=["rm_*"])
    checked("files", tools_cache=[
        {"name": "read_file", "description": "Read a file.", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}},
        {"name": "rm_rf", "description": "Delete everything.", "inputSchema": {"type": "object"}},
    ], tools_fetched_at=timezone.now())
    page = reader.get("/mcp/registry/files")
    assert "The allow/deny lists block 1 of them: rm_rf" in text(page)
    assert text(page).count("blocked by allow/deny") == 1
    assert '"path": {' in page.content.decode().replace("&quot;", '"'), "the schema, indented"


def test_a_server_page_lists_recent_calls_newest_first_linked_to_studio(reader):
    files = server("files")
    write_chain("run-a", 3, shape=lambda seq: {"server_name": "files", "server_id": str(files.pk), "tool": f"t{seq}"})
    write_chain("run-b", 2, shape=lambda seq: {"server_name": "other", "tool": "nope"})
    page = reader.get("/mcp/registry/files").content.decode()
    assert page.index(">t3<") < page.index(">t2<") < page.index(">t1<") and ">nope<" not in page
    assert 'href="/studio/runs/run-a/evidence/3"' in page


def test_an_unknown_server_is_a_404_page(reader):
    response = reader.get("/mcp/registry/nope")
    assert response.status_code == 404 and "no MCP server with that id or name" in text(response)


def test_check_health_now_probes_the_upstream_and_says_what_happened(admin, sdk):
    server("files", url=sdk.modern_json.url())
    response = admin.post("/mcp/registry/files/check-health", follow=True)
    assert "files is healthy (" in text(response) and "protocol 2026-07-28" in text(response)
    assert registry.server_get(ref="files").health_status == "healthy"


def test_check_health_now_reports_an_unreachable_server(admin):
    server("gone", url="http://127.0.0.1:9/mcp")
    response = admin.post("/mcp/registry/gone/check-health", follow=True)
    assert "gone is unreachable:" in text(response)


def test_refresh_tools_lists_them_again(admin, sdk):
    server("files", url=sdk.legacy_sse.url())
    response = admin.post("/mcp/registry/files/refresh-tools", follow=True)
    assert "files lists 12 tools." in text(response)
    assert len(registry.server_get(ref="files").tools_cache) == 12


def test_refresh_tools_of_an_unreachable_server_says_why(admin):
    server("gone", url="http://127.0.0.1:9/mcp")
    assert "Could not list the tools of gone:" in text(admin.post("/mcp/registry/gone/refresh-tools", follow=True))


def test_disabling_asks_first_then_disables_and_enabling_undoes_it(admin):
    server("files")
    confirm = admin.get("/mcp/registry/files/disable")
    assert confirm.status_code == 200 and "503 server_disabled" in text(confirm)
    assert registry.server_get(ref="files").enabled, "looking at the confirmation changes nothing"
    done = admin.post("/mcp/registry/files/disable", follow=True)
    assert "files is disabled" in text(done) and not registry.server_get(ref="files").enabled
    admin.post("/mcp/registry/files/enable")
    assert registry.server_get(ref="files").enabled


def test_an_unknown_action_is_a_404(admin):
    server("files")
    assert admin.post("/mcp/registry/files/delete").status_code == 404
    assert admin.get("/mcp/registry/files/check-health").status_code == 404, "only destructive actions have a GET"
