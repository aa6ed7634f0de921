"""Revocation: at once for every worker, durable with persistence, fail closed without Redis."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection

from maestro import bridge, errors
from maestro.api_errors import status_for
from sessions_app import revocation
from sessions_app.models import McpSession
from sessions_app.services import rebuild_revocations, session_revoke, session_revoke_run
from sessions_app.store import get_store
from tests.sessions_app.helpers import RUN, authenticate, counted, create, flush_cache, open_session, outcome, redis_commands, revocation_ttl, revoke
from tests.support.services import RedisServer


def data_plane_statements() -> int:
    """Statements the data plane's own database connections have sent in this process."""
    from maestro import adb

    async def count() -> int:
        return adb.database().statements

    return bridge.run(count())

ROOT = Path(__file__).resolve().parents[2]
needs_redis = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the real Redis (not the embedded cache)")


def new_session(run_id: str = RUN, **kwargs):
    kwargs.setdefault("scopes", ["mcp:invoke"])
    kwargs.setdefault("ttl_seconds", 600)
    return create(run_id=run_id, created_by="test", **kwargs)


# --- revocation is immediate and exact --------------------------------------------------------


def test_revoking_one_session_leaves_its_siblings_alone(persist):
    (gone, gone_token), (_, kept_token) = new_session(), new_session()
    session_revoke(run_id=RUN, sid=gone.sid)
    assert outcome(gone_token) == "session_revoked"
    assert outcome(kept_token) == "ok"


def test_a_revoked_token_is_revoked_on_any_url(persist):
    record, token = new_session()
    session_revoke(run_id=RUN, sid=record.sid)
    # The run check comes first: on another run's URL the answer stays 403, never "ok".
    assert outcome(token, "run-elsewhere") == "run_mismatch"


def test_the_revocation_key_lives_until_the_token_dies(either_store, persist, settings):
    settings.SESSION_TOKEN_LEEWAY_SECONDS = 5
    record, _ = new_session(ttl_seconds=120)
    session_revoke(run_id=RUN, sid=record.sid)
    assert 119 <= revocation_ttl(record.sid) <= 126


# --- what survives the loss of Redis ---------------------------------------------------------


def test_with_persistence_a_revocation_survives_a_redis_flush(persisted):
    # Given a revoked and a live persisted session
    (revoked, revoked_token), (_, live_token) = new_session(), new_session()
    session_revoke(run_id=RUN, sid=revoked.sid)
    # When Redis loses everything
    flush_cache()
    # Then the revoked token is still refused and the live one still works
    assert outcome(revoked_token) == "session_revoked"
    assert outcome(live_token) == "ok"


def test_after_a_flush_one_request_reseeds_every_revocation(persisted):
    # Given two revoked sessions and a flush
    (first, first_token), (second, second_token) = new_session(), new_session()
    session_revoke(run_id=RUN, sid=first.sid)
    session_revoke(run_id=RUN, sid=second.sid)
    flush_cache()
    store = get_store()
    assert store.is_revoked_with_sentinel(second.sid) == (False, False)
    # When any token is checked (answered from the table, and a re-seed starts in the background)
    assert outcome(first_token) == "session_revoked"
    bridge.run(revocation.reseeds_settled())
    # Then the other revocation is back in the cache and the sentinel is set again
    assert store.is_revoked_with_sentinel(second.sid) == (True, True)
    assert outcome(second_token) == "session_revoked"


def test_a_lost_publication_is_repaired_by_the_rebuild(persisted):
    # Given a revocation that reached the table but whose Redis key is gone (a failed write)
    record, token = new_session()
    session_revoke(run_id=RUN, sid=record.sid)
    get_store().forget([record.sid])
    get_store().set_sentinel()
    # When the periodic rebuild runs, the key is published again
    assert rebuild_revocations() == 1
    assert outcome(token) == "session_revoked"


def test_without_persistence_a_flush_forgets_revocations_as_documented(db, settings):
    settings.MCP_SESSIONS_PERSIST = False
    record, token = new_session()
    session_revoke(run_id=RUN, sid=record.sid)
    flush_cache()
    # The documented limit (docs/sessions.md): the token is good again until it expires.
    assert outcome(token) == "ok"
    with pytest.raises(errors.NotFound):
        session_revoke(run_id=RUN, sid=record.sid)


# --- the hot path's cost ----------------------------------------------------------------------


@needs_redis
def test_verification_is_one_redis_command_and_no_query(persist, django_assert_num_queries):
    _, token = new_session()
    authenticate(token=token, run_id=RUN)  # with persistence, sets the sentinel once (in the background)
    bridge.run(revocation.reseeds_settled())
    baseline = redis_commands()
    idle = redis_commands() - baseline  # the INFO call itself
    before = redis_commands()
    with django_assert_num_queries(0):
        authenticate(token=token, run_id=RUN)
    assert redis_commands() - before - idle == 1


@needs_redis
def test_concurrent_checks_of_one_session_share_one_redis_command(persist):
    # Given a session whose token arrives 200 times at once (an MCP client's streams opening)
    _, token = new_session()
    authenticate(token=token, run_id=RUN)
    bridge.run(revocation.reseeds_settled())
    baseline = redis_commands()
    idle = redis_commands() - baseline

    async def burst():
        from sessions_app.verify import session_authenticate

        return await asyncio.gather(*(session_authenticate(token=token, run_id=RUN) for _ in range(200)))

    before = redis_commands()
    claims = bridge.run(burst())
    # Then every check is answered, by one look-up
    assert len(claims) == 200 and all(c.run_id == RUN for c in claims)
    assert redis_commands() - before - idle == 1


@needs_redis
def test_a_persisted_create_is_one_insert_and_no_redis(persisted, django_assert_num_queries):
    new_session()  # the registry's version token and the pool are warm from here on
    baseline = redis_commands()
    idle = redis_commands() - baseline
    before, statements = redis_commands(), data_plane_statements()
    with django_assert_num_queries(0):
        record, _ = new_session()
    assert data_plane_statements() - statements == 1
    assert McpSession.objects.filter(sid=record.sid).exists()
    assert redis_commands() - before - idle == 0


# --- metrics ------------------------------------------------------------------------------------


def test_created_and_revoked_are_counted_once_each(persist):
    created, revoked = counted("created"), counted("revoked")
    (first, _), _ = new_session(), new_session()
    session_revoke(run_id=RUN, sid=first.sid)
    session_revoke(run_id=RUN, sid=first.sid)  # a repeat is not a new revocation
    assert session_revoke_run(run_id=RUN) == 1
    assert counted("created") - created == 2
    assert counted("revoked") - revoked == 2


def test_the_counter_is_on_the_metrics_page(client, persist):
    new_session()
    assert 'mcp_sessions_total{event="created"}' in client.get("/metrics").content.decode()


# --- a second worker sees a revocation at once -------------------------------------------------

WORKER = r"""
import sys
import django
django.setup()
from maestro import bridge, errors
from sessions_app.verify import session_authenticate

print("ready", flush=True)
for line in sys.stdin:
    token, run_id = line.split()
    try:
        bridge.run(session_authenticate(token=token, run_id=run_id))
        print("ok", flush=True)
    except errors.GatewayError as exc:
        print(exc.code, flush=True)
"""


class Worker:
    """Another gateway process on the same PostgreSQL, Redis and secret, asked one token at a time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(x.strip()) for x in self.proc.stdout], daemon=True).start()
        assert self.lines.get(timeout=60) == "ready"

    def check(self, token: str, run_id: str = RUN) -> str:
        self.proc.stdin.write(f"{token} {run_id}\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=30)

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def worker(transactional_db, settings):
    if connection.vendor != "postgresql" or not os.environ.get("REDIS_URL"):
        pytest.skip("a second process needs the shared PostgreSQL and Redis")
    settings.MCP_SESSIONS_PERSIST = True
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MCP_SESSIONS_PERSIST": "true",
        "DJANGO_SETTINGS_MODULE": "maestro.settings",
    }
    proc = Worker(env)
    yield proc
    proc.stop()


def test_a_second_process_sees_a_revocation_at_once_and_after_a_flush(worker):
    # Given a session the other worker accepts
    record, token = new_session()
    assert worker.check(token) == "ok"
    # When this process revokes it, the other refuses it on its very next check
    session_revoke(run_id=RUN, sid=record.sid)
    assert worker.check(token) == "session_revoked"
    # And after Redis is flushed, the other worker still refuses it (it asks PostgreSQL)
    flush_cache()
    assert worker.check(token) == "session_revoked"
    assert worker.check(token, "run-elsewhere") == "run_mismatch"


# --- Redis unreachable: fail closed -----------------------------------------------------------


@pytest.fixture
def doomed_redis(settings):
    """The gateway pointed at a Redis of its own, which the test can stop."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs real Redis")
    server = RedisServer().start()
    settings.REDIS_URL = server.url
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": server.url,
            "OPTIONS": {**settings.CACHES["default"]["OPTIONS"], "SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    yield server
    server.destroy()


def test_without_redis_and_persistence_no_token_is_accepted(db, settings, doomed_redis):
    settings.MCP_SESSIONS_PERSIST = False
    _, token = new_session()
    assert outcome(token) == "ok"
    doomed_redis.stop()
    with pytest.raises(errors.Unavailable) as caught:
        authenticate(token=token, run_id=RUN)
    assert (caught.value.code, status_for(caught.value)) == ("revocation_unavailable", 503)


def test_without_redis_the_table_answers_with_persistence(transactional_db, settings, doomed_redis):
    # Given a live and a revoked persisted session
    settings.MCP_SESSIONS_PERSIST = True
    (_, live_token), (revoked, revoked_token) = new_session(), new_session()
    session_revoke(run_id=RUN, sid=revoked.sid)
    # When Redis goes away, the table is the durable record: each check asks it
    doomed_redis.stop()
    assert outcome(live_token) == "ok"
    assert outcome(revoked_token) == "session_revoked"


def test_without_redis_the_api_answers_503_and_readiness_names_redis(ops, settings, doomed_redis):
    settings.MCP_SESSIONS_PERSIST = False
    body = open_session(ops)
    doomed_redis.stop()
    created = ops.post(f"/api/maestro/v1/runs/{RUN}/mcp/sessions", {"scopes": ["mcp:invoke"]}, format="json")
    assert (created.status_code, created.json()["error"]["code"]) == (503, "session_store_unavailable")
    assert revoke(ops, body["sid"]).status_code == 503
    ready = ops.get("/api/ready")
    assert ready.status_code == 503 and "redis" in ready.json()["failing"]


def test_a_revocation_that_cannot_be_published_is_503_but_durable(ops, settings, doomed_redis):
    # Given a persisted session, and Redis going away
    settings.MCP_SESSIONS_PERSIST = True
    body = open_session(ops)
    doomed_redis.stop()
    # When it is revoked, the caller is told the publication failed
    response = revoke(ops, body["sid"])
    assert (response.status_code, response.json()["error"]["code"]) == (503, "revocation_unavailable")
    # Then the table has it, so a fresh Redis (restarted empty) still refuses the token
    doomed_redis.start()
    assert outcome(body["token"]) == "session_revoked"
