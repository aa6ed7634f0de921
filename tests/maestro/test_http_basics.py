"""CORS from CORS_ORIGIN, Prometheus metrics, and the error shape for bad input."""

import pytest


@pytest.mark.django_db
def test_cors_allows_only_configured_origins(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://studio.example.com"]
    allowed = client.options("/api/health", HTTP_ORIGIN="https://studio.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    other = client.options("/api/health", HTTP_ORIGIN="https://evil.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
    assert allowed["access-control-allow-origin"] == "https://studio.example.com"
    assert "access-control-allow-origin" not in other


@pytest.mark.django_db
def test_metrics_are_exposed(client):
    client.get("/api/health")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_view_transport_method_total" in response.content


@pytest.mark.django_db
def test_unknown_url_is_json_404(client):
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "not found"}}
