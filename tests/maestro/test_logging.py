"""Real requests carrying secrets leave no secret in the captured log output."""

import io
import json
import logging

import pytest

from maestro.logs import redact

BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJzZWNyZXQtc2lkIn0.c2lnbmF0dXJlLXNlY3JldA"
API_KEY = "mcpk_0123456789ab_S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t"
COOKIE = "sessionid=cookie-secret-value-123"
QUERY_TOKEN = "query-token-secret-456"


@pytest.fixture
def log_output():
    """Point the configured stderr handler (with its real filter and formatter) at a buffer."""
    handler = logging.getLogger().handlers[0]
    buffer = io.StringIO()
    # Swapped, not setStream(): that flushes the old stream, which a previous in-process pytest run
    # (mutmut runs several) may have closed.
    previous, handler.stream = handler.stream, buffer
    access = logging.getLogger("maestro.access")
    old_level = access.level
    access.setLevel(logging.DEBUG)
    yield buffer
    access.setLevel(old_level)
    handler.stream = previous


@pytest.mark.django_db
def test_request_logs_carry_no_credentials(client, log_output, admin_key):
    client.get(
        f"/api/maestro/v1/whoami?token={QUERY_TOKEN}&page=2",
        HTTP_AUTHORIZATION=f"Bearer {BEARER}",
        HTTP_X_API_KEY=API_KEY,
        HTTP_COOKIE=COOKIE,
        HTTP_PROXY_AUTHORIZATION="Basic cHJveHktc2VjcmV0",
    )
    client.get("/api/maestro/v1/whoami", HTTP_X_API_KEY=admin_key)
    output = log_output.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    assert any(line.get("path") == "/api/maestro/v1/whoami" for line in lines), "the requests were logged"
    for secret in (BEARER, API_KEY, "cookie-secret-value-123", QUERY_TOKEN, "cHJveHktc2VjcmV0", admin_key):
        assert secret not in output
    assert "[REDACTED]" in output
    assert "page=2" in output, "non-secret parts of the query stay readable"


def test_redaction_walks_arguments_extra_and_nested_structures(log_output):
    logger = logging.getLogger("maestro.test")
    logger.warning("calling %s with %s", "upstream", {"headers": {"Authorization": "Basic abc123secret"}, "ok": 1})
    logger.warning("state", extra={"session_token": "tok-secret-1", "payload": {"nested": [{"password": "pw-secret-2"}]}, "client_secret": "cs-3"})
    logger.warning({"api_key": "ak-secret-4", "note": "Bearer tok-secret-5 in text"})
    output = log_output.getvalue()
    for secret in ("abc123secret", "tok-secret-1", "pw-secret-2", "cs-3", "ak-secret-4", "tok-secret-5"):
        assert secret not in output
    assert "'ok': 1" in output, "non-secret values stay readable"


def test_redact_keeps_shape():
    assert redact({"a": [1, {"token": "x"}], "Set-Cookie": "y"}) == {"a": [1, {"token": "[REDACTED]"}], "Set-Cookie": "[REDACTED]"}


# Values with no secret shape (no Bearer/Basic, not a JWT, not an mcpk_ key): only the key's name
# says they are secret.
SHAPELESS = {"Authorization": "Token s3cr3t-by-name-1", "X-API-Key": "abc", "password": "hunter2-by-name-3"}


def test_redaction_goes_by_key_name_not_only_by_value_shape():
    assert redact(SHAPELESS) == {key: "[REDACTED]" for key in SHAPELESS}
    assert redact({"headers": [{"Proxy-Authorization": "Negotiate n3g"}]}) == {"headers": [{"Proxy-Authorization": "[REDACTED]"}]}


def test_an_extra_field_named_password_is_redacted(log_output):
    logging.getLogger("maestro.test").warning("login", extra={"password": "hunter2-by-name-3", "user": "ops"})
    line = json.loads(log_output.getvalue().splitlines()[-1])
    assert (line["password"], line["user"], line["logger"], line["level"]) == ("[REDACTED]", "ops", "maestro.test", "WARNING")


@pytest.mark.parametrize(("text", "secret"), [
    ("Authorization: Token s3cr3t", "s3cr3t"),
    ('{"authorization": "Negotiate YII-s3cr3t"}', "YII-s3cr3t"),
    ("proxy_authorization=Custom abc123", "abc123"),
    ("X-API-Key: abc", "abc"),
    ("Cookie: sessionid=c00kie", "c00kie"),
    ("Set-Cookie: sid=c00kie2; Path=/", "c00kie2"),
])
def test_labelled_credentials_inside_text_are_redacted_whatever_their_scheme(log_output, text, secret):
    logging.getLogger("maestro.test").warning("upstream said %s", text)
    output = log_output.getvalue()
    assert secret not in output and "[REDACTED]" in output


@pytest.mark.django_db
def test_a_request_with_shapeless_credentials_logs_none_of_them(client, log_output):
    client.get("/api/maestro/v1/whoami", HTTP_AUTHORIZATION="Token s3cr3t-by-name-1", HTTP_X_API_KEY="plain-key-by-name-2")
    output = log_output.getvalue()
    assert '"path":"/api/maestro/v1/whoami"' in output and "request_headers" in output
    for secret in ("s3cr3t-by-name-1", "plain-key-by-name-2"):
        assert secret not in output
