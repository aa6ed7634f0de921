"""Operator API keys: the command prints a key once, the API tells 401 from 403."""

import pytest

from sessions_app.models import ApiKey
from tests.conftest import make_key
from tests.support.processes import run_manage

pytestmark = pytest.mark.django_db(transaction=True)


def whoami(api, key=None):
    return api.get("/api/maestro/v1/whoami", **({"HTTP_X_API_KEY": key} if key is not None else {}))


def test_command_creates_lists_and_revokes_a_key(api):
    created = run_manage("mcp_apikey", "create", "--name", "ops", "--scopes", "admin:mcp,mcp:read")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("mcpk_")
    row = ApiKey.objects.get(name="ops")
    assert key not in (row.digest, row.prefix), "only a digest is stored"

    listed = run_manage("mcp_apikey", "list")
    assert "ops" in listed.stdout and key not in listed.stdout

    assert whoami(api, key).json() == {"operator": "apikey:ops", "scopes": ["admin:mcp", "mcp:read"], "admin": False}

    revoked = run_manage("mcp_apikey", "revoke", "--name", "ops")
    assert revoked.returncode == 0
    assert ApiKey.objects.get(name="ops").revoked


def test_command_rejects_unknown_scopes_and_duplicates():
    bad = run_manage("mcp_apikey", "create", "--name", "x", "--scopes", "root")
    assert bad.returncode != 0 and "unknown scope 'root'" in bad.stderr
    run_manage("mcp_apikey", "create", "--name", "dup", "--scopes", "mcp:read")
    again = run_manage("mcp_apikey", "create", "--name", "dup", "--scopes", "mcp:read")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_no_key_is_401(api):
    response = whoami(api)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("key", ["", "garbage", "mcpk_000000000000_" + "a" * 43])
def test_unknown_or_malformed_key_is_401(api, key):
    response = whoami(api, key)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


def test_revoked_key_is_401_at_once_in_this_process(api):
    key = make_key(["mcp:read"], name="short-lived")
    assert whoami(api, key).status_code == 200
    run_manage("mcp_apikey", "revoke", "--name", "short-lived")
    from sessions_app.apikeys import apikey_revoke

    apikey_revoke(name="short-lived")  # clears this process's verification cache, as the admin action does
    assert whoami(api, key).status_code == 401


def test_key_without_the_scope_is_403(api):
    key = make_key(["mcp:read"])
    response = api.post("/api/maestro/v1/mcp/servers", {"name": "x", "url": "http://127.0.0.1:1/mcp"}, format="json", HTTP_X_API_KEY=key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_staff_login_is_the_admin_role(api, django_user_model):
    user = django_user_model.objects.create_user("alice", password="pw-alice-123", is_staff=True)
    api.force_login(user)
    assert whoami(api).json() == {"operator": "user:alice", "scopes": ["admin:mcp", "mcp:read", "mcp:sessions"], "admin": True}


def test_non_staff_login_is_not_an_operator(api, django_user_model):
    api.force_login(django_user_model.objects.create_user("bob", password="pw-bob-12345"))
    assert whoami(api).status_code == 403
