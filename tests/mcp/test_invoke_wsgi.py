"""The WSGI fast path in front of Django: what it serves, what it leaves to Django, and that its
answers look like Django's. (Every invoke test also runs through it: see the `client` fixtures.)"""

from __future__ import annotations

import json
import logging

import pytest

from tests.mcp.helpers import register, text_of
from tests.mcp.invoke_helpers import RUN, FastPathClient, error_code, evidence, session_token

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = ("x-content-type-options", "referrer-policy", "cross-origin-opener-policy", "x-frame-options")
BODY = json.dumps({"server": "modern", "tool": "echo", "arguments": {"text": "hi"}})


@pytest.fixture
def token(admin_api, sdk):
    register(admin_api, name="modern", url=sdk.modern_json.url())
    return session_token()


@pytest.fixture
def fast(client):
    return FastPathClient(client)


def post(fast: FastPathClient, token: str, body: str = BODY, **extra):
    return fast.post(f"/api/maestro/v1/runs/{RUN}/mcp/invoke", body, HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def test_the_fast_path_answers_as_django_would(fast, client, token):
    # Given the same call sent to Django's view and to the fast path
    by_django = client.post(f"/api/maestro/v1/runs/{RUN}/mcp/invoke", BODY, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    by_fast_path = post(fast, token)
    # Then both succeed with the same shape and the same security headers, and both are recorded
    assert fast.claimed == 1
    assert by_django.status_code == by_fast_path.status_code == 200
    assert text_of(by_fast_path.json()["result"]) == "hi"
    assert set(by_django.json()) == set(by_fast_path.json())
    for header in (*SECURITY_HEADERS, "content-type", "x-ig-policy-receipt"):
        assert by_fast_path[header], header
        if header != "x-ig-policy-receipt":
            assert by_fast_path[header] == by_django[header], header
    assert [row.seq for row in evidence()] == [1, 2]


def test_an_unauthenticated_call_gets_the_bearer_challenge(fast, token):
    response = post(fast, "not-a-token")
    assert response.status_code == 401 and error_code(response) == "malformed_token"
    assert response["www-authenticate"].startswith("Bearer")


def test_the_fast_path_writes_the_access_log_line(fast, token, caplog):
    with caplog.at_level(logging.INFO, logger="maestro.access"):
        post(fast, token)
    lines = [r for r in caplog.records if r.name == "maestro.access"]
    assert len(lines) == 1
    assert (lines[0].method, lines[0].path, lines[0].status) == ("POST", f"/api/maestro/v1/runs/{RUN}/mcp/invoke", 200)
    assert token not in caplog.text


def test_a_browser_call_with_an_origin_goes_through_django_for_cors(fast, token, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://studio.example.com"]
    response = post(fast, token, HTTP_ORIGIN="https://studio.example.com")
    assert fast.claimed == 0
    assert response.status_code == 200
    assert response["access-control-allow-origin"] == "https://studio.example.com"


def test_a_host_not_allowed_is_left_to_django(fast, token):
    response = post(fast, token, HTTP_HOST="evil.example.com")
    assert fast.claimed == 0 and response.status_code == 400
    assert evidence() == []


def test_a_body_without_a_length_is_left_to_django(fast, token):
    response = post(fast, token, CONTENT_LENGTH="")
    assert fast.claimed == 0 and response.status_code == 400


def test_a_body_over_the_limit_is_refused_without_reading_it(client, token, settings):
    settings.MCP_MAX_REQUEST_BYTES = 1000
    fast = FastPathClient(client)  # reads the limit when built, as the deployed app does at start
    response = post(fast, token, body=json.dumps({"server": "modern", "tool": "echo", "arguments": {"text": "x" * 2000}}))
    assert fast.claimed == 1
    assert response.status_code == 413 and error_code(response) == "payload_too_large"
    assert evidence() == []


def test_a_crash_in_the_core_is_a_json_500_without_a_traceback(fast, token, monkeypatch, caplog):
    def explode(**_):
        raise RuntimeError("boom: secret internals")

    monkeypatch.setattr("mcp.api.invoke_views.tool_invoke", explode)
    with caplog.at_level(logging.ERROR, logger="maestro.errors"):
        response = post(fast, token)
    assert response.status_code == 500 and error_code(response) == "internal_error"
    assert b"boom" not in response.content and b"Traceback" not in response.content
    assert "boom" in caplog.text  # the operator sees it in the log


def test_other_methods_and_paths_are_django_s(fast, token):
    environ_get = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/maestro/v1/runs/{RUN}/mcp/invoke"}
    assert fast.app._claim(environ_get) is None
    assert fast.app._claim({"REQUEST_METHOD": "POST", "PATH_INFO": "/api/maestro/v1/mcp/servers", "CONTENT_LENGTH": "2"}) is None
    assert fast.app._claim({"REQUEST_METHOD": "POST", "PATH_INFO": "/api/maestro/v1/runs/r\u00e9/mcp/invoke",
                            "CONTENT_LENGTH": "2", "HTTP_HOST": "127.0.0.1"}) is None


def test_a_database_failure_before_the_upstream_call_is_503_not_500(fast, token, monkeypatch):
    from django.db import OperationalError

    def database_down(**_):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr("mcp.services.invoke.server_spec_get", database_down)
    response = post(fast, token)
    assert response.status_code == 503 and error_code(response) == "database_unavailable"
    assert b"couldn't get a connection" not in response.content  # internals stay in the log
