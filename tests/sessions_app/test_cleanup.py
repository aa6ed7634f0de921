"""The cleanup (Celery task and command), the end-of-session hooks, and the admin."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from sessions_app import services
from sessions_app.models import McpSession
from sessions_app.services import session_revoke
from sessions_app.store import get_store
from sessions_app.tasks import cleanup_expired_sessions
from tests.sessions_app.helpers import RUN, counted, create, outcome


def new_session(run_id: str = RUN):
    return create(run_id=run_id, scopes=["mcp:invoke"], ttl_seconds=600, created_by="test")


def expire(record, seconds_ago: int, persisted: bool) -> None:
    """Move a session's expiry `seconds_ago` into the past, as time would."""
    if persisted:
        McpSession.objects.filter(sid=record.sid).update(expires_at=timezone.now() - timedelta(seconds=seconds_ago))
        return
    store = get_store()
    entry = store.index_get_one(record.run_id, record.sid)
    entry["expires_at"] = int(time.time()) - seconds_ago
    store.index_update(record.run_id, [entry])


def known_sids(persisted: bool, run_id: str = RUN) -> set[str]:
    if persisted:
        return set(McpSession.objects.values_list("sid", flat=True))
    return {entry["sid"] for entry in get_store().index_get(run_id)}


@pytest.fixture
def ended():
    """Collects the sids passed to the on_session_end hooks during the test."""
    seen: list[str] = []
    services.on_session_end.append(seen.append)
    yield seen
    services.on_session_end.remove(seen.append)


def test_the_task_removes_only_what_expired(persist, settings, ended):
    settings.SESSION_TOKEN_LEEWAY_SECONDS = 5
    # Given: long expired, expired and revoked, expired within the leeway, live, live and revoked
    old, old_revoked, in_leeway, live, live_revoked = (new_session()[0] for _ in range(5))
    for record in (old_revoked, live_revoked):
        session_revoke(run_id=RUN, sid=record.sid)
    ended.clear()
    expire(old, 3600, persist)
    expire(old_revoked, 60, persist)
    expire(in_leeway, 2, persist)
    # When the Celery task runs
    removed = cleanup_expired_sessions()
    # Then only the two past the leeway are gone, and each one's hook ran
    assert removed == 2
    assert known_sids(persist) == {in_leeway.sid, live.sid, live_revoked.sid}
    assert sorted(ended) == sorted([old.sid, old_revoked.sid])


def test_the_cleanup_keeps_live_revocations_and_drops_dead_keys(either_store, persist):
    (gone, _), (kept, kept_token) = new_session(), new_session()
    session_revoke(run_id=RUN, sid=gone.sid)
    session_revoke(run_id=RUN, sid=kept.sid)
    assert get_store().is_revoked(gone.sid)
    expire(gone, 600, persist)
    cleanup_expired_sessions()
    assert outcome(kept_token) == "session_revoked"
    assert not get_store().is_revoked(gone.sid), "the dead session's key is gone"
    assert get_store().is_revoked(kept.sid), "the live revocation stays"


def test_a_failing_hook_does_not_stop_the_cleanup(persist, ended):
    def broken(sid):
        raise RuntimeError("upstream is down")

    services.on_session_end.insert(0, broken)
    try:
        record, _ = new_session()
        expire(record, 600, persist)
        assert cleanup_expired_sessions() == 1
    finally:
        services.on_session_end.remove(broken)
    assert ended == [record.sid]


def test_revocation_ends_the_session_once(persist, ended):
    record, _ = new_session()
    session_revoke(run_id=RUN, sid=record.sid)
    session_revoke(run_id=RUN, sid=record.sid)
    assert ended == [record.sid]


def test_the_command_cleans_up_by_hand(persist, capsys):
    record, _ = new_session()
    expire(record, 600, persist)
    call_command("mcp_sessions", "cleanup")
    assert "removed 1 expired session(s)" in capsys.readouterr().out
    assert known_sids(persist) == set()


def test_the_command_revokes_a_session_or_a_run(persist, capsys):
    (first, first_token), (_, second_token) = new_session(), new_session()
    call_command("mcp_sessions", "revoke", "--run", RUN, "--sid", first.sid)
    assert outcome(first_token) == "session_revoked" and outcome(second_token) == "ok"
    call_command("mcp_sessions", "revoke", "--run", RUN)
    assert outcome(second_token) == "session_revoked"
    assert "revoked 1 session(s) of run run-1" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no session"):
        call_command("mcp_sessions", "revoke", "--run", RUN, "--sid", "0" * 32)


# --- admin --------------------------------------------------------------------------------------


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-1")
    client.force_login(user)
    return client


def test_admin_lists_sessions_with_their_status(staff, persisted):
    live, _ = new_session()
    revoked, _ = new_session()
    session_revoke(run_id=RUN, sid=revoked.sid)
    page = staff.get("/admin/sessions_app/mcpsession/").content.decode()
    assert live.sid in page and revoked.sid in page
    assert "active" in page and "revoked" in page
    only_revoked = staff.get("/admin/sessions_app/mcpsession/?status=revoked").content.decode()
    assert revoked.sid in only_revoked and live.sid not in only_revoked


def test_admin_revoke_action_revokes_for_real(staff, persisted):
    (chosen, chosen_token), (other, other_token) = new_session(), new_session()
    before = counted("revoked")
    response = staff.post(
        "/admin/sessions_app/mcpsession/",
        {"action": "revoke_sessions", "_selected_action": [chosen.sid]},
        follow=True,
    )
    assert response.status_code == 200
    assert "revoked 1 session(s)" in response.content.decode().lower()
    assert McpSession.objects.get(sid=chosen.sid).revoked_at is not None
    assert McpSession.objects.get(sid=other.sid).revoked_at is None
    assert outcome(chosen_token) == "session_revoked" and outcome(other_token) == "ok"
    assert counted("revoked") - before == 1


def test_admin_cannot_add_or_delete_sessions(staff, persisted):
    record, _ = new_session()
    assert staff.get("/admin/sessions_app/mcpsession/add/").status_code == 403
    assert staff.get(f"/admin/sessions_app/mcpsession/{record.sid}/delete/").status_code == 403
