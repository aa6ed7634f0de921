"""The registry API: CRUD, validation naming the field, permissions, filters, write-only secrets."""

from __future__ import annotations

import logging
import uuid

import pytest
from rest_framework.test import APIClient

from mcp.models import McpServer
from mcp.secrets import decrypt_headers
from tests.conftest import make_key
from tests.mcp.helpers import SERVERS, register

pytestmark = pytest.mark.django_db

SECRET = "Bearer sk-live-0123456789abcdef"


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.fixture
def reader_api():
    client = APIClient()  # its own client: `admin_api` already holds the shared `api` one
    client.credentials(HTTP_X_API_KEY=make_key(["mcp:read"]))
    return client


# --- create and read --------------------------------------------------------------------------


def test_register_a_server_returns_201_and_never_the_secret(admin_api, caplog):
    caplog.set_level(logging.DEBUG)
    # when an admin registers a server with every field
    response = admin_api.post(SERVERS, {
        "name": "search-tools", "url": "https://tools.example.com/mcp", "description": "web search",
        "scopes": ["search:read"], "tags": ["prod", "search"], "enabled": True, "timeout_ms": 2500,
        "auth_headers": {"Authorization": SECRET, "X-Tenant": "acme"}, "tool_allow": ["search_*"], "tool_deny": ["search_admin*"],
    }, format="json")
    # then it is created, with a Location, and the secret is nowhere in the answer or the logs
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["Location"].endswith(f"{SERVERS}/{body['id']}")
    assert body["name"] == "search-tools" and body["tags"] == ["prod", "search"] and body["timeout_ms"] == 2500
    assert body["has_auth_headers"] is True and body["auth_header_names"] == ["Authorization", "X-Tenant"]
    assert body["health"]["status"] == "unknown" and body["tools_count"] is None
    assert "auth_headers" not in body and SECRET not in response.content.decode()
    assert SECRET not in caplog.text
    # and at rest it is encrypted, bound to this server
    row = McpServer.objects.get(pk=body["id"])
    assert SECRET not in row.auth_headers_encrypted and row.auth_headers_encrypted.startswith("v1:")
    assert decrypt_headers(row.auth_headers_encrypted, server_id=row.id)["Authorization"] == SECRET


def test_a_ciphertext_copied_to_another_server_does_not_decrypt(admin_api):
    one = register(admin_api, name="one", url="http://127.0.0.1:9/mcp", auth_headers={"Authorization": SECRET})
    two = register(admin_api, name="two", url="http://127.0.0.1:9/mcp")
    stolen = McpServer.objects.get(pk=one["id"]).auth_headers_encrypted
    McpServer.objects.filter(pk=two["id"]).update(auth_headers_encrypted=stolen)
    # the health check needs the headers: it reports them unreadable instead of using them
    response = admin_api.get(f"{SERVERS}/{two['id']}/health")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "secrets_unreadable"


def test_defaults_apply_when_only_name_and_url_are_given(admin_api):
    body = register(admin_api, name="minimal", url="http://127.0.0.1:8080/mcp")
    assert body | {"id": None, "created_at": None, "updated_at": None} == body | {
        "id": None, "created_at": None, "updated_at": None, "description": "", "scopes": [], "tags": [], "enabled": True,
        "timeout_ms": 10000, "tool_allow": [], "tool_deny": [], "has_auth_headers": False, "auth_header_names": [],
    }


def test_read_one_by_id_or_by_name(reader_api, admin_api):
    created = register(admin_api, name="by-name", url="http://127.0.0.1:8080/mcp")
    assert reader_api.get(f"{SERVERS}/{created['id']}").json()["name"] == "by-name"
    assert reader_api.get(f"{SERVERS}/by-name").json()["id"] == created["id"]


@pytest.mark.parametrize("ref", [str(uuid.uuid4()), "no-such-server", "not%20a%20uuid!", "x" * 200])
def test_unknown_or_malformed_id_is_404(reader_api, ref):
    response = reader_api.get(f"{SERVERS}/{ref}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "server_not_found"


def test_list_is_paginated_and_filters_by_tag_enabled_and_name(reader_api, admin_api):
    register(admin_api, name="alpha-search", url="http://127.0.0.1:1/mcp", tags=["prod", "search"])
    register(admin_api, name="beta-files", url="http://127.0.0.1:2/mcp", tags=["prod"], enabled=False)
    register(admin_api, name="gamma-search", url="http://127.0.0.1:3/mcp", tags=["dev"])

    def names(query: str) -> list[str]:
        response = reader_api.get(f"{SERVERS}{query}")
        assert response.status_code == 200, response.content
        return [s["name"] for s in response.json()["results"]]

    page = reader_api.get(f"{SERVERS}?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert names("?limit=2&offset=2") == ["gamma-search"]
    assert names("?tag=prod") == ["alpha-search", "beta-files"]
    assert names("?tag=pro") == []  # whole tags only
    assert names("?enabled=false") == ["beta-files"]
    assert names("?search=SEARCH") == ["alpha-search", "gamma-search"]
    assert names("?tag=prod&enabled=true&search=alpha") == ["alpha-search"]


@pytest.mark.parametrize("query, field", [("?enabled=maybe", "enabled"), ("?tag=Bad%20Tag", "tag"), (f"?search={'x' * 65}", "search")])
def test_bad_list_filters_are_400(reader_api, query, field):
    response = reader_api.get(f"{SERVERS}{query}")
    assert response.status_code == 400
    assert error_of(response)["details"]["field"] == field


# --- update and delete ------------------------------------------------------------------------


def test_patch_changes_only_what_is_given_and_keeps_secrets(admin_api):
    created = register(admin_api, name="patchable", url="http://127.0.0.1:1/mcp", tags=["a"], auth_headers={"Authorization": SECRET})
    response = admin_api.patch(f"{SERVERS}/{created['id']}", {"timeout_ms": 3000, "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["timeout_ms"] == 3000 and body["enabled"] is False and body["tags"] == ["a"] and body["has_auth_headers"] is True


@pytest.mark.parametrize("cleared", [{}, None])
def test_patch_with_empty_auth_headers_removes_them(admin_api, cleared):
    created = register(admin_api, name="creds", url="http://127.0.0.1:1/mcp", auth_headers={"Authorization": SECRET})
    body = admin_api.patch(f"{SERVERS}/creds", {"auth_headers": cleared}, format="json").json()
    assert body["has_auth_headers"] is False and body["auth_header_names"] == []
    assert McpServer.objects.get(pk=created["id"]).auth_headers_encrypted == ""


def test_put_replaces_the_server_but_keeps_secrets_it_cannot_read_back(admin_api):
    created = register(admin_api, name="puttable", url="http://127.0.0.1:1/mcp", tags=["a"], scopes=["x:y"], auth_headers={"Authorization": SECRET})
    read_back = admin_api.get(f"{SERVERS}/{created['id']}").json()
    response = admin_api.put(f"{SERVERS}/{created['id']}", {"name": "renamed", "url": read_back["url"], "id": read_back["id"]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "renamed" and body["tags"] == [] and body["scopes"] == [] and body["has_auth_headers"] is True


def test_put_without_required_fields_is_400(admin_api):
    register(admin_api, name="needs-url", url="http://127.0.0.1:1/mcp")
    response = admin_api.put(f"{SERVERS}/needs-url", {"name": "needs-url"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["details"]["field"] == "url"


def test_delete_is_204_then_404(admin_api):
    created = register(admin_api, name="doomed", url="http://127.0.0.1:1/mcp")
    assert admin_api.delete(f"{SERVERS}/{created['id']}").status_code == 204
    assert admin_api.get(f"{SERVERS}/{created['id']}").status_code == 404
    assert admin_api.delete(f"{SERVERS}/{created['id']}").status_code == 404


# --- conflicts and validation -----------------------------------------------------------------


def test_duplicate_name_is_409_on_create_and_on_rename(admin_api):
    register(admin_api, name="taken", url="http://127.0.0.1:1/mcp")
    register(admin_api, name="other", url="http://127.0.0.1:1/mcp")
    created = admin_api.post(SERVERS, {"name": "taken", "url": "http://127.0.0.1:2/mcp"}, format="json")
    renamed = admin_api.patch(f"{SERVERS}/other", {"name": "taken"}, format="json")
    for response in (created, renamed):
        assert response.status_code == 409
        assert error_of(response)["code"] == "server_exists" and "taken" in error_of(response)["message"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "Upper"), ("name", ""), ("name", "x" * 65), ("name", "-leading"), ("name", "has space"), ("name", 42),
        ("name", str(uuid.uuid4())),
        ("url", "ftp://example.com/mcp"), ("url", "https://user:pw@example.com/mcp"), ("url", "http:///mcp"),
        ("url", "https://example.com/" + "a" * 2048), ("url", "https://exa mple.com/mcp"), ("url", 12),
        ("url", "https://example.com:99999/mcp"), ("url", "https://example.com/mcp#frag"),
        ("description", ["not", "text"]), ("description", "d" * 2001),
        ("scopes", "search:read"), ("scopes", [1]),
        ("tags", "prod"), ("tags", ["Prod"]), ("tags", ["a"] * 2), ("tags", [f"t{i}" for i in range(17)]), ("tags", ["x" * 33]),
        ("enabled", "yes"), ("enabled", 1),
        ("timeout_ms", 99), ("timeout_ms", 120_001), ("timeout_ms", "1000"), ("timeout_ms", True), ("timeout_ms", 1.5),
        ("tool_allow", ["bad pattern"]), ("tool_deny", "echo"),
        ("auth_headers", {"Content-Type": "text/plain"}), ("auth_headers", {"Mcp-Session-Id": "x"}),
        ("auth_headers", {"Mcp-Param-Region": "x"}), ("auth_headers", {"Bad Name": "x"}),
        ("auth_headers", {"X-Key": "line\nbreak"}), ("auth_headers", {"X-Key": 5}), ("auth_headers", ["Authorization"]),
        ("surprise", 1),
    ],
)
def test_invalid_fields_are_400_naming_the_field(admin_api, field, value):
    body = {"name": "valid-name", "url": "http://127.0.0.1:1/mcp", field: value}
    response = admin_api.post(SERVERS, body, format="json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid_request"
    assert error["details"]["field"] == field and error["message"].startswith(f"{field}: ")
    assert "line\nbreak" not in error["message"]  # a header value is never echoed
    assert not McpServer.objects.exists()


def test_bad_json_and_non_objects_are_400(admin_api):
    broken = admin_api.post(SERVERS, data='{"name": "x", ', content_type="application/json")
    listed = admin_api.post(SERVERS, ["name", "url"], format="json")
    assert broken.status_code == 400 and error_of(broken)["code"] == "invalid_json"
    assert listed.status_code == 400 and error_of(listed)["code"] == "invalid_request"


# --- who may do what --------------------------------------------------------------------------


def test_no_credentials_or_a_wrong_key_is_401(api):
    assert api.get(SERVERS).status_code == 401
    api.credentials(HTTP_X_API_KEY="mcpk_nope_0000000000000000")
    response = api.get(SERVERS)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"


def test_read_scope_may_read_but_not_write(reader_api, admin_api):
    register(admin_api, name="guarded", url="http://127.0.0.1:1/mcp")
    assert reader_api.get(SERVERS).status_code == 200
    assert reader_api.get(f"{SERVERS}/guarded").status_code == 200
    attempts = [
        reader_api.post(SERVERS, {"name": "mine", "url": "http://127.0.0.1:1/mcp"}, format="json"),
        reader_api.patch(f"{SERVERS}/guarded", {"enabled": False}, format="json"),
        reader_api.put(f"{SERVERS}/guarded", {"name": "guarded", "url": "http://127.0.0.1:2/mcp"}, format="json"),
        reader_api.delete(f"{SERVERS}/guarded"),
    ]
    for response in attempts:
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    assert McpServer.objects.get(name="guarded").enabled is True


def test_a_sessions_only_key_may_read_but_not_write(admin_api):
    register(admin_api, name="visible", url="http://127.0.0.1:1/mcp")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=make_key(["mcp:sessions"]))
    assert client.get(f"{SERVERS}/visible").status_code == 200
    assert client.delete(f"{SERVERS}/visible").status_code == 403


def test_the_browsable_api_works_for_a_logged_in_admin(admin_client, admin_api):
    register(admin_api, name="browsable", url="http://127.0.0.1:1/mcp", auth_headers={"Authorization": SECRET})
    listing = admin_client.get(SERVERS, HTTP_ACCEPT="text/html")
    detail = admin_client.get(f"{SERVERS}/browsable", HTTP_ACCEPT="text/html")
    for response in (listing, detail):
        assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
        page = response.content.decode()
        assert "browsable" in page and SECRET not in page
    created = admin_client.post(SERVERS, {"name": "from-admin", "url": "http://127.0.0.1:2/mcp"}, content_type="application/json")
    assert created.status_code == 201
