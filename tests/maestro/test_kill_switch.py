"""MAESTRO_MCP_ENABLED=false removes every MCP route; health, readiness, admin and metrics stay."""

import pytest

MCP_ROUTES = ["/api/maestro/v1/whoami", "/api/maestro/v1/mcp/servers", "/api/maestro/v1/runs/run-1/mcp/sessions"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", MCP_ROUTES)
def test_enabled_routes_exist(client, path):
    # Given the default (enabled), a route answers: without credentials it is 401, not 404.
    assert client.get(path).status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("path", MCP_ROUTES)
def test_disabled_routes_are_gone(client, admin_key, mcp_disabled, path):
    response = client.get(path, HTTP_X_API_KEY=admin_key)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("path, status", [("/api/health", 200), ("/api/ready", 200), ("/metrics", 200), ("/admin/login/", 200)])
def test_operations_stay_when_disabled(client, mcp_disabled, path, status):
    assert client.get(path).status_code == status
