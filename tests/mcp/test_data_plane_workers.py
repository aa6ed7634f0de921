"""The data plane across real worker processes: a revocation reaches every worker within a second
without a Redis round trip per call, a revocation made while the watch is disconnected still holds,
an in-flight slot held by a worker that died frees itself, and the in-flight limit holds with
Redis and without it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django_redis import get_redis_connection

from maestro import bridge
from sessions_app import revocation
from sessions_app.services import session_revoke
from tests.conftest import make_key
from tests.mcp.helpers import register, stats
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: the web door as deployed, in this process)
from tests.mcp.invoke_helpers import error_code, invoke, open_session, session_token
from tests.sessions_app.helpers import outcome
from tests.support.processes import WebServer, project_env
from tests.support.services import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

RUN = "run-workers"


def redis_calls(*commands: str) -> int:
    stats_ = get_redis_connection("default").info("commandstats")
    return sum(stats_.get(f"cmdstat_{name}", {}).get("calls", 0) for name in commands)


def call(web: WebServer, token: str, tool: str = "echo", arguments: dict | None = None, timeout: float = 10) -> httpx.Response:
    """One invocation on a connection of its own (so the kernel spreads calls over the workers)."""
    return httpx.post(
        f"{web.base_url}/api/maestro/v1/runs/{RUN}/mcp/invoke", timeout=timeout,
        json={"server": "modern", "tool": tool, "arguments": arguments if arguments is not None else {"text": "x"}},
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
    )


def test_a_revocation_reaches_every_worker_within_a_second_and_calls_cost_redis_no_auth_round_trip(admin_api, sdk):
    # Given the web door with two workers, each following revocations in memory (sessions
    # persisted: then a check that asks Redis is one MGET, which nothing else sends)
    register(admin_api, name="modern", url=sdk.modern_json.url())
    key = make_key(["admin:mcp"])
    with WebServer(project_env(WEB_CONCURRENCY="2", MCP_SESSIONS_PERSIST="true")) as web:
        api = f"{web.base_url}/api/maestro/v1/runs/{RUN}/mcp/sessions"
        created = httpx.post(api, json={"scopes": ["mcp:invoke"]}, headers={"X-API-Key": key}, timeout=10).json()
        token = created["token"]
        assert all(call(web, token).status_code == 200 for _ in range(10))
        # When 20 calls are made, the token checks cost Redis nothing (the slot is one script each)
        before = redis_calls("mget")
        assert all(call(web, token).status_code == 200 for _ in range(20))
        assert redis_calls("mget") - before == 0
        # When the session is revoked through the API
        assert httpx.delete(f"{api}/{created['sid']}", headers={"X-API-Key": key}, timeout=10).status_code == 204
        revoked_at = time.monotonic()
        # Then within a second no worker accepts it: ten calls in a row, on fresh connections, refused
        refused_in_a_row = 0
        while refused_in_a_row < 10:
            response = call(web, token)
            refused_in_a_row = refused_in_a_row + 1 if response.status_code == 401 else 0
            assert time.monotonic() - revoked_at < 1.0 or refused_in_a_row, "still accepted a second after the revocation"
        assert error_code(response) == "session_revoked"


def test_a_revocation_made_while_the_watch_is_disconnected_still_denies(transactional_db):
    # Given this process following revocations, current
    watch = bridge.run(_start_watch())
    try:
        assert wait_until(lambda: watch.current, timeout=5)
        record, token = open_session(run_id=RUN)
        resyncs = watch.resyncs
        # When Redis drops the subscription and, before the watch is back, a session is revoked
        get_redis_connection("default").execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        session_revoke(run_id=RUN, sid=record.sid)
        # Then the token is refused at once (the watch is not trusted until it has resynced)...
        assert outcome(token, RUN) == "session_revoked"
        # ...and after the watch reconnected and re-read the set, from memory
        assert wait_until(lambda: watch.resyncs > resyncs and watch.current, timeout=5)
        assert watch.known(record.sid) is True and outcome(token, RUN) == "session_revoked"
    finally:
        bridge.run(revocation.watch_stop())


async def _start_watch():
    return revocation.watch_start()


def worker_pids(web: WebServer) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(web.process.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def test_a_slot_held_by_a_worker_that_died_frees_itself_while_the_session_keeps_calling(admin_api, sdk):
    # Given one slot per session, a server whose calls last at most 1 s, and a grace of 1 s
    register(admin_api, name="modern", url=sdk.modern_json.url(), timeout_ms=1000)
    token = session_token(run_id=RUN)
    env = project_env(WEB_CONCURRENCY="1", MCP_SESSION_MAX_IN_FLIGHT="1", MCP_SESSION_SLOT_GRACE_SECONDS="1")
    with WebServer(env) as web:
        assert call(web, token).status_code == 200
        [worker] = worker_pids(web)
        before = stats(sdk.modern_json).get("tools/call", 0)
        # When the worker dies (SIGKILL) holding the slot of a call in flight
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(lambda: call(web, token, tool="sleep", arguments={"seconds": 0.9}))
            assert wait_until(lambda: stats(sdk.modern_json).get("tools/call", 0) > before, timeout=10)
            os.kill(worker, signal.SIGKILL)
            with pytest.raises(httpx.HTTPError):
                pending.result().raise_for_status()
        killed_at = time.monotonic()
        # Then, calling again and again as a busy run would, the session gets its slot back once
        # the dead call's slot expired (its 1 s timeout plus 1 s grace), not never
        assert wait_until(lambda: worker_pids(web) - {worker}, timeout=20), web.output()
        statuses = []
        while not statuses or statuses[-1] != 200:
            try:
                statuses.append(call(web, token, timeout=5).status_code)
            except httpx.TransportError:
                statuses.append(0)  # the replacement worker is not listening yet
            assert time.monotonic() - killed_at < 15, statuses
        assert set(statuses) <= {0, 200, 429}


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "embedded"])
def test_the_slot_comes_back_after_success_error_and_timeout_and_the_limit_holds(client, admin_api, sdk, faulty, settings, shared):
    # Given one slot per session, with Redis or with this process's own count (no Redis)
    settings.MCP_SESSION_MAX_IN_FLIGHT = 1
    if not shared:
        settings.REDIS_URL = None
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "maestro"}}
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token(run_id=RUN)
    # When calls end in every way one after the other, each finds the slot free again
    assert invoke(client, token, run_id=RUN, server="modern", tool="echo", arguments={"text": "x"}).status_code == 200
    assert invoke(client, token, run_id=RUN, server="modern", tool="boom").status_code == 502
    assert invoke(client, token, run_id=RUN, server="modern", tool="sleep", arguments={"seconds": 3}, timeout_ms=300).status_code == 504
    assert invoke(client, token, run_id=RUN, server="modern", tool="nope").status_code == 404
    # And while one call holds it, the next one is refused
    before = stats(sdk.modern_json).get("tools/call", 0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(invoke, client, token, run_id=RUN, server="modern", tool="sleep", arguments={"seconds": 1})
        assert wait_until(lambda: stats(sdk.modern_json).get("tools/call", 0) > before, timeout=10)
        refused = invoke(client, token, run_id=RUN, server="modern", tool="echo", arguments={"text": "x"})
        assert refused.status_code == 429 and error_code(refused) == "too_many_in_flight"
        assert slow.result().status_code == 200
    assert invoke(client, token, run_id=RUN, server="modern", tool="echo", arguments={"text": "x"}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_data_plane_stopped_and_started_again_in_one_process_gets_new_pools(client, admin_api, sdk):
    from tests.support.gateway import stop_data_plane

    # Given a call served through the data plane's pools
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token(run_id=RUN)
    assert invoke(client, token, run_id=RUN, server="modern", tool="echo", arguments={"text": "x"}).status_code == 200
    # When the data plane stops (closing its database pool and upstream client) and serves again
    stop_data_plane()
    answer = invoke(client, token, run_id=RUN, server="modern", tool="echo", arguments={"text": "y"})
    # Then the call is answered on new pools, not refused by the closed ones
    assert answer.status_code == 200, answer.content
