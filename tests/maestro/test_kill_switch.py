"""MAESTRO_MCP_ENABLED=false removes every MCP route, the data plane's included; health,
readiness, admin and metrics stay."""

import pytest

from tests.support.gateway import GatewayClient, fresh_application

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


DATA_PLANE = [
    ("POST", "/api/maestro/v1/runs/run-1/mcp/invoke", {"server": "s", "tool": "t"}),
    ("GET", "/api/maestro/v1/runs/run-1/mcp/tools", None),
    ("POST", "/api/maestro/v1/runs/run-1/mcp/sessions", {"scopes": ["mcp:invoke"]}),
    ("POST", "/api/maestro/v1/runs/run-1/mcp", {"jsonrpc": "2.0", "id": 1, "method": "ping"}),
    ("GET", "/api/maestro/v1/runs/run-1/mcp", None),
]


@pytest.mark.parametrize("method, path, body", DATA_PLANE)
def test_data_plane_routes_exist_when_enabled(transactional_db, admin_key, method, path, body):
    response = GatewayClient(app=fresh_application()).request(method, path, json=body, headers={"x-api-key": admin_key})
    assert response.status_code != 404


@pytest.mark.parametrize("method, path, body", DATA_PLANE)
def test_data_plane_routes_are_gone_when_disabled(transactional_db, admin_key, mcp_disabled, method, path, body):
    # A restart with the switch off: the data plane answers nothing, Django has no such route.
    response = GatewayClient(app=fresh_application()).request(
        method, path, json=body, headers={"x-api-key": admin_key, "authorization": "Bearer x.y.z"},
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
