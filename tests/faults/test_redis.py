"""Redis stopped and started again (empty: it lost everything) under a running gateway, with
sessions persisted and not: clean 503s while it is gone, calls succeed again once it is back
without restarting the gateway, every worker's revocation watch reconnects, and every call that
was let through has its row."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.support import Gateway, Ledger, assert_clean, assert_evidence_complete, code_of, upstream_calls
from tests.support.services import wait_until


@pytest.fixture(params=[True, False], ids=["persisted", "not-persisted"])
def persisted_gateway(request, stack, gateway, upstream):
    if request.param:
        yield gateway, True
        return
    with Gateway(stack, MCP_SESSIONS_PERSIST="false") as other:
        other.register("echo", upstream.url())
        yield other, False


def at_once(gateway, token: str, run: str, text: str, count: int = 8) -> list:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda n: gateway.invoke(token, run, "echo", "echo", {"text": f"{text} {n}"}), range(count)))


def test_redis_stopped_and_started_again(persisted_gateway, stack, upstream):
    gateway, persisted = persisted_gateway
    run = f"faults-redis-{'persisted' if persisted else 'cache-only'}"
    ledger = Ledger(run)
    live, doomed = gateway.open_session(run), gateway.open_session(run)
    ran_before = upstream_calls(upstream)
    # Given calls at once on both workers (each worker's Redis pool holds several connections)
    assert [ledger.add(a).status_code for a in at_once(gateway, live["token"], run, "before")] == [200] * 8
    assert wait_until(stack.all_following, timeout=10)

    # When Redis stops, and the run and its operator go on
    stack.redis.stop()
    try:
        during = [ledger.add(gateway.invoke(live["token"], run, "echo", "echo", {"text": "during"})) for _ in range(3)]
        listed = gateway.tools(live["token"], run)
        opened = gateway.operator("POST", f"/runs/{run}/mcp/sessions", json={"scopes": ["mcp:invoke"]})
        revoked = gateway.revoke(run, doomed["sid"])
        ready = gateway.web.get("/api/ready")
    finally:
        stack.restart_redis()

    # Then every answer was a clean one, never a 500: calls 503, and the readiness check names Redis
    for answer in during:
        assert_clean(answer, allowed={503})
    assert ready.status_code == 503 and ready.json()["failing"] == ["redis"]
    # (revocation is answered 503 either way: with persistence it is already durable in the table)
    assert_clean(revoked, allowed={503})
    if persisted:
        # With persistence tokens are checked against the table: the call is refused only for want
        # of its in-flight slot (and recorded); reading tools and opening sessions need no Redis.
        assert {code_of(a) for a in during} == {"cache_unavailable"}
        assert listed.status_code == 200 and opened.status_code == 201, (listed.text, opened.text)
    else:
        # Without it no token can be proven unrevoked: fail closed, before anything is recorded.
        assert {code_of(a) for a in during} == {"revocation_unavailable"}
        assert_clean(listed, allowed={503})
        assert_clean(opened, allowed={503})

    # When Redis is back (empty), the very next calls succeed, all of them (no connection pooled
    # before the restart fails one), with no gateway restart
    back = [ledger.add(a) for a in at_once(gateway, live["token"], run, "back")]
    assert [(a.status_code, code_of(a)) for a in back] == [(200, "")] * 8
    # And the revocation made while Redis was gone holds with persistence (the table had it).
    # Without, it never happened (the operator was told 503), and what Redis held of the session is
    # gone with it, as the README says: its token is good until it expires, its sid unknown (404).
    retried = ledger.add(gateway.invoke(doomed["token"], run, "echo", "echo", {"text": "revoked?"}))
    if persisted:
        assert code_of(retried) == "session_revoked"
    else:
        assert retried.status_code == 200
        assert gateway.revoke(run, doomed["sid"]).status_code == 404

    # And every worker's watch follows revocations again, so a new one is refused within a second
    assert wait_until(stack.all_following, timeout=10), gateway.log()
    last = gateway.open_session(run)
    assert ledger.add(gateway.invoke(last["token"], run, "echo", "echo", {"text": "x"})).status_code == 200
    assert gateway.revoke(run, last["sid"]).status_code == 204
    revoked_at = time.monotonic()
    refused = wait_until(lambda: code_of(ledger.add(gateway.invoke(last["token"], run, "echo", "echo", {"text": "x"}))) == "session_revoked", timeout=5)
    assert refused and time.monotonic() - revoked_at < 1.0

    # And the tool ran exactly for the calls answered 200, each of which has its row, in one chain
    assert upstream_calls(upstream) - ran_before == ledger.statuses().count(200)
    assert_evidence_complete(gateway, ledger, ordered=False)
