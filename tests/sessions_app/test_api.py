"""The sessions API on real PostgreSQL and Redis, with sessions persisted and not."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from tests.conftest import make_key
from tests.sessions_app.helpers import OTHER_RUN, RUN, authenticate, create, list_sessions, open_session, outcome, revoke

BASE = "/api/maestro/v1/runs"


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# --- create ---------------------------------------------------------------------------------


def test_create_returns_a_bearer_token_that_works(ops, persist):
    body = open_session(ops, scopes=["mcp:invoke", "mcp:tools"], ttl_seconds=120)
    assert set(body) == {"sid", "token", "token_type", "run_id", "scopes", "servers", "issued_at", "expires_at"}
    assert (body["token_type"], body["run_id"], body["scopes"], body["servers"]) == ("Bearer", RUN, ["mcp:invoke", "mcp:tools"], [])
    assert parse(body["expires_at"]) - parse(body["issued_at"]) == timedelta(seconds=120)
    assert outcome(body["token"]) == "ok"


def test_create_is_not_cached_by_intermediaries(ops, persist):
    response = ops.post(f"{BASE}/{RUN}/mcp/sessions", {"scopes": ["mcp:invoke"]}, format="json")
    assert response["Cache-Control"] == "no-store"


def test_ttl_defaults_to_the_configured_maximum(ops, persist, settings):
    settings.SESSION_TTL_SECONDS = 900
    body = open_session(ops)
    assert parse(body["expires_at"]) - parse(body["issued_at"]) == timedelta(seconds=900)


def test_a_persisted_session_is_one_row(ops, persisted):
    from sessions_app.models import McpSession

    body = open_session(ops, scopes=["mcp:tools"])
    row = McpSession.objects.get(sid=body["sid"])
    assert (row.run_id, row.scopes, row.servers, row.revoked_at) == (RUN, ["mcp:tools"], [], None)
    assert row.created_by.startswith("apikey:")


def test_a_redis_only_session_writes_no_row(ops, db, settings):
    from sessions_app.models import McpSession

    settings.MCP_SESSIONS_PERSIST = False
    open_session(ops)
    assert McpSession.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": "mcp:invoke"}, "scopes"),
        ({"scopes": [1]}, "scopes"),
        ({"scopes": ["mcp:sessions"]}, "scopes"),
        ({"scopes": ["no such scope"]}, "scopes"),
        ({"scopes": ["mcp:invoke", "x:y"]}, "scopes"),
        ({"scopes": ["mcp:invoke"], "ttl_seconds": 0}, "ttl_seconds"),
        ({"scopes": ["mcp:invoke"], "ttl_seconds": 3601}, "ttl_seconds"),
        ({"scopes": ["mcp:invoke"], "ttl_seconds": "60"}, "ttl_seconds"),
        ({"scopes": ["mcp:invoke"], "ttl_seconds": True}, "ttl_seconds"),
        ({"scopes": ["mcp:invoke"], "ttl_seconds": 1.5}, "ttl_seconds"),
        ({"scopes": ["mcp:invoke"], "servers": "all"}, "servers"),
        ({"scopes": ["mcp:invoke"], "servers": ["no-such-server"]}, "servers"),
        ({"scopes": ["mcp:invoke"], "servers": [str(uuid.uuid4())]}, "servers"),
        ({"scopes": ["mcp:invoke"], "token": "mine"}, "token"),
    ],
)
def test_bad_input_is_400_naming_the_field(ops, persist, settings, body, field):
    settings.SESSION_TTL_SECONDS = 3600
    response = ops.post(f"{BASE}/{RUN}/mcp/sessions", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"].startswith(f"{field}:"), error
    assert error["details"]["field"] == field


@pytest.mark.parametrize("run_id", ["has space", "x" * 129, "-leading-dash", "semi;colon", "%2e%2e"])
def test_unsafe_run_ids_are_400(ops, persist, run_id):
    response = ops.post(f"{BASE}/{run_id}/mcp/sessions", {"scopes": ["mcp:invoke"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_run_id"
    assert ops.get(f"{BASE}/{run_id}/mcp/sessions").status_code == 400


def test_a_run_id_of_128_safe_characters_is_fine(ops, persist):
    run_id = "R" + "a1._:-" * 21 + "z"
    assert len(run_id) == 128
    assert open_session(ops, run_id=run_id)["run_id"] == run_id


# --- who may call ---------------------------------------------------------------------------


def test_without_a_key_every_route_is_401(api, db):
    assert api.post(f"{BASE}/{RUN}/mcp/sessions", {"scopes": ["mcp:invoke"]}, format="json").status_code == 401
    assert api.get(f"{BASE}/{RUN}/mcp/sessions").status_code == 401
    assert api.delete(f"{BASE}/{RUN}/mcp/sessions").status_code == 401


def test_a_read_only_operator_may_list_but_not_create_or_revoke(api, db):
    api.credentials(HTTP_X_API_KEY=make_key(["mcp:read"]))
    assert api.get(f"{BASE}/{RUN}/mcp/sessions").status_code == 200
    response = api.post(f"{BASE}/{RUN}/mcp/sessions", {"scopes": ["mcp:invoke"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert api.delete(f"{BASE}/{RUN}/mcp/sessions").status_code == 403
    assert revoke(api, uuid.uuid4().hex).status_code == 403


def test_admin_mcp_implies_mcp_sessions(admin_api):
    assert open_session(admin_api)["run_id"] == RUN


# --- list -----------------------------------------------------------------------------------


def test_list_shows_status_and_never_a_token(ops, persist):
    # Given an active, a revoked and an expired session (expiry is moved into the past)
    active = open_session(ops)
    revoked = open_session(ops)
    expired = open_session(ops)
    assert revoke(ops, revoked["sid"]).status_code == 204
    _expire(expired["sid"], persist)
    # When the run's sessions are listed
    items = {item["sid"]: item for item in list_sessions(ops)}
    # Then each shows its status, and no token appears anywhere
    assert {sid: item["status"] for sid, item in items.items()} == {
        active["sid"]: "active",
        revoked["sid"]: "revoked",
        expired["sid"]: "expired",
    }
    assert all("token" not in item for item in items.values())
    assert all(body["token"] not in str(items) for body in (active, revoked, expired))
    assert items[revoked["sid"]]["revoked_at"] is not None


def test_list_shows_only_the_runs_own_sessions(ops, persist):
    mine = open_session(ops, run_id=RUN)
    open_session(ops, run_id=OTHER_RUN)
    assert [item["sid"] for item in list_sessions(ops, RUN)] == [mine["sid"]]


def test_list_is_paginated(ops, persist):
    for _ in range(3):
        open_session(ops)
    page = ops.get(f"{BASE}/{RUN}/mcp/sessions?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]


# --- revoke ---------------------------------------------------------------------------------


def test_revoke_is_204_idempotent_and_rejects_the_token(ops, persist):
    body = open_session(ops)
    assert revoke(ops, body["sid"]).status_code == 204
    assert revoke(ops, body["sid"]).status_code == 204
    assert outcome(body["token"]) == "session_revoked"


def test_revoking_an_unknown_or_foreign_sid_is_404(ops, persist):
    foreign = open_session(ops, run_id=OTHER_RUN)
    for sid in (uuid.uuid4().hex, "not-a-sid", foreign["sid"]):
        response = revoke(ops, sid)
        assert response.status_code == 404, sid
        assert response.json()["error"]["code"] == "session_not_found"
    assert outcome(foreign["token"], OTHER_RUN) == "ok"


def test_revoking_the_run_ends_all_its_sessions_and_only_those(ops, persist):
    # Given two sessions of the run and one of another run
    first, second = open_session(ops), open_session(ops)
    other = open_session(ops, run_id=OTHER_RUN)
    # When the run ends
    assert ops.delete(f"{BASE}/{RUN}/mcp/sessions").status_code == 204
    # Then its tokens are refused, the other run's still works, and a repeat is harmless
    assert outcome(first["token"]) == outcome(second["token"]) == "session_revoked"
    assert outcome(other["token"], OTHER_RUN) == "ok"
    assert ops.delete(f"{BASE}/{RUN}/mcp/sessions").status_code == 204
    assert {item["status"] for item in list_sessions(ops)} == {"revoked"}


def test_a_new_session_after_the_run_was_revoked_works(ops, persist):
    open_session(ops)
    ops.delete(f"{BASE}/{RUN}/mcp/sessions")
    assert outcome(open_session(ops)["token"]) == "ok"


# --- servers --------------------------------------------------------------------------------


def _server(name: str, scopes: list[str] | None = None):
    from mcp.models import McpServer

    return McpServer.objects.create(id=uuid.uuid4(), name=name, url=f"http://127.0.0.1:9/{name}", scopes=scopes or [])


def test_servers_are_resolved_by_id_or_name_to_ids(ops, persist):
    alpha, beta = _server("alpha"), _server("beta")
    body = open_session(ops, servers=["alpha", str(beta.id), str(alpha.id)])
    assert body["servers"] == [str(alpha.id), str(beta.id)]
    

    assert authenticate(token=body["token"], run_id=RUN).servers == (str(alpha.id), str(beta.id))


def test_a_scope_a_registered_server_requires_can_be_granted(ops, persist):
    _server("github", scopes=["github:write"])
    assert open_session(ops, scopes=["mcp:invoke", "github:write"])["scopes"] == ["github:write", "mcp:invoke"]
    response = ops.post(f"{BASE}/{RUN}/mcp/sessions", {"scopes": ["gitlab:write"]}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_scope"


def _expire(sid: str, persisted: bool) -> None:
    """Move a session's expiry into the past, as time would."""
    from sessions_app.models import McpSession
    from sessions_app.store import get_store

    past = datetime.now().astimezone() - timedelta(seconds=60)
    if persisted:
        McpSession.objects.filter(sid=sid).update(expires_at=past)
        return
    store = get_store()
    entry = store.index_get_one(RUN, sid)
    entry["expires_at"] = int(past.timestamp())
    store.index_update(RUN, [entry])


