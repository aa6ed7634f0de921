"""The same behaviour on the embedded default (no REDIS_URL: the file cache in the data folder)."""

from __future__ import annotations

import time

import pytest

from sessions_app.selectors import session_list
from sessions_app.services import session_revoke, session_revoke_run, sessions_cleanup_expired
from sessions_app.store import CacheStore, get_store
from tests.sessions_app.helpers import RUN, authenticate, create, flush_cache, outcome


@pytest.fixture(autouse=True)
def embedded_cache(settings, tmp_path):
    settings.REDIS_URL = None
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path / "cache")}}
    assert isinstance(get_store(), CacheStore)
    yield
    flush_cache()


def new_session():
    return create(run_id=RUN, scopes=["mcp:invoke"], ttl_seconds=600, created_by="test")


def test_create_verify_revoke_and_list(persist):
    (first, first_token), (second, second_token) = new_session(), new_session()
    assert outcome(first_token) == "ok"
    session_revoke(run_id=RUN, sid=first.sid)
    assert outcome(first_token) == "session_revoked" and outcome(second_token) == "ok"
    assert {r.sid: r.status() for r in session_list(run_id=RUN)} == {first.sid: "revoked", second.sid: "active"}
    assert session_revoke_run(run_id=RUN) == 1
    assert outcome(second_token) == "session_revoked"


def test_persisted_revocations_survive_a_cache_clear(persisted):
    record, token = new_session()
    session_revoke(run_id=RUN, sid=record.sid)
    flush_cache()
    assert outcome(token) == "session_revoked"


def test_cleanup_prunes_the_in_process_index(db, settings):
    settings.MCP_SESSIONS_PERSIST = False
    (old, _), (live, _) = new_session(), new_session()
    store = get_store()
    entry = store.index_get_one(RUN, old.sid)
    entry["expires_at"] = int(time.time()) - 600
    store.index_update(RUN, [entry])
    assert sessions_cleanup_expired() == 1
    assert [r.sid for r in session_list(run_id=RUN)] == [live.sid]
