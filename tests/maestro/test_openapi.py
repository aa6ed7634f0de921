"""The OpenAPI document of the whole HTTP API (/api/schema/) and its Swagger UI (/api/docs/),
served from the installed package's files, never a CDN."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

from tests.conftest import reload_urls

API = "/api/maestro/v1"


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200 and response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def test_the_document_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_every_route_of_the_api_is_described(schema):
    assert set(schema["paths"]) == {
        "/api/health", "/api/ready", f"{API}/whoami", f"{API}/mcp/servers", f"{API}/mcp/servers/{{ref}}",
        f"{API}/mcp/servers/{{ref}}/health", f"{API}/mcp/servers/{{ref}}/tools", f"{API}/runs/{{run_id}}/mcp/sessions",
        f"{API}/runs/{{run_id}}/mcp/sessions/{{sid}}", f"{API}/runs/{{run_id}}/mcp/invoke", f"{API}/runs/{{run_id}}/mcp/tools",
        f"{API}/runs/{{run_id}}/mcp/evidence", f"{API}/runs/{{run_id}}/mcp/evidence/export",
    }


def test_the_invoke_route_is_described_as_the_readme_says(schema):
    invoke = schema["paths"][f"{API}/runs/{{run_id}}/mcp/invoke"]["post"]
    assert invoke["security"] == [{"sessionToken": []}]
    body = invoke["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"server", "tool", "arguments", "timeout_ms"} and body["required"] == ["server", "tool"]
    ok = invoke["responses"]["200"]
    assert "x-ig-policy-receipt" in ok["headers"]
    assert set(ok["content"]["application/json"]["schema"]["required"]) == {"invocation_id", "server", "tool", "result", "latency_ms", "evidence"}
    assert set(invoke["responses"]) == {"200", "400", "401", "403", "404", "413", "429", "502", "503", "504"}
    for status, response in invoke["responses"].items():
        if status != "200":
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_security_schemes_are_the_session_bearer_and_the_api_key(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["sessionToken"] == {**schemes["sessionToken"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    creating = schema["paths"][f"{API}/runs/{{run_id}}/mcp/sessions"]["post"]
    assert {"apiKey": []} in creating["security"] and creating["responses"]["201"]


def test_every_operation_documents_the_one_error_shape(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if s >= "400"}
            assert errors or path in ("/api/health", "/api/ready"), f"{method} {path} documents no error"
            for status, response in errors.items():
                body = response["content"]["application/json"]["schema"]
                if path == "/api/ready":
                    continue  # 503 names the failing dependency in the readiness shape
                assert {"$ref": "#/components/schemas/Error"} in [body, *body.get("oneOf", [])], (path, status)


@pytest.mark.django_db
def test_the_docs_page_uses_only_the_packaged_swagger_ui(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/schema/" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets) and any("swagger-ui.css" in a for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), f"{asset} would leave the gateway (a CDN?)"
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not in an installed package"
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost|testserver)", html.split("<script")[0]), "no external URL in the head"


@pytest.mark.django_db
def test_the_schema_goes_with_the_kill_switch(client, settings):
    settings.MAESTRO_MCP_ENABLED = False
    reload_urls()
    try:
        assert client.get("/api/schema/").status_code == 404
        assert client.get("/api/docs/").status_code == 404
    finally:
        settings.MAESTRO_MCP_ENABLED = True
        reload_urls()
