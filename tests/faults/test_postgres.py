"""PostgreSQL stopped and started again under a running gateway (two workers, sessions persisted):
clean 503s while it is gone, calls succeed again as soon as it is back without restarting the
gateway, and no call succeeds unrecorded."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.faults.support import Ledger, assert_clean, assert_evidence_complete, code_of, upstream_calls

# Long enough for a reconnecting pool's back-off to grow past its connection timeout (1, 2, 4,
# then 8 s between attempts): the first request after such an outage once waited out the 5 s and
# failed although PostgreSQL was back (maestro.adb.RECONNECT_S).
OUTAGE_S = 8.0


def test_postgres_stopped_and_started_again(gateway, stack, upstream):
    run, ledger = "faults-postgres", Ledger("faults-postgres")
    token = gateway.open_session(run)["token"]
    ran_before = upstream_calls(upstream)
    # Given calls of one run on both workers (their pools hold connections, the run's chain is
    # written by two processes)
    with ThreadPoolExecutor(max_workers=4) as pool:
        warm = list(pool.map(lambda n: gateway.invoke(token, run, "echo", "echo", {"text": f"warm {n}"}), range(12)))
    assert [ledger.add(a).status_code for a in warm] == [200] * 12

    # When PostgreSQL stops, and the run and its operator go on
    stack.postgres.stop()
    stopped_at = time.monotonic()
    try:
        # (at once: each waits for a connection as long as the pools allow, 5 s, then gives up)
        with ThreadPoolExecutor(max_workers=8) as pool:
            calling = pool.submit(gateway.invoke, token, run, "echo", "echo", {"text": "during"})
            listing = pool.submit(gateway.tools, token, run)
            operating = [
                pool.submit(gateway.operator, "POST", f"/runs/{run}/mcp/sessions", json={"scopes": ["mcp:invoke"]}),
                pool.submit(gateway.operator, "GET", f"/runs/{run}/mcp/sessions"),
                pool.submit(gateway.revoke, run, "0" * 32),
                pool.submit(gateway.operator, "GET", "/mcp/servers"),
                pool.submit(gateway.operator, "GET", f"/runs/{run}/mcp/evidence"),
            ]
            ready = gateway.web.get("/api/ready")
            during, listed, operator = ledger.add(calling.result()), listing.result(), [f.result() for f in operating]
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))  # the fault's length, not a wait for an event
    finally:
        stack.postgres.restart()
    # Then the call ran but could not be recorded, so it was withheld: a clean 503, never a 500
    assert_clean(during, allowed={503})
    assert code_of(during) == "evidence_unavailable"
    assert listed.status_code == 200, listed.text  # a session's tools are known in memory
    assert ready.status_code == 503 and ready.json()["failing"] == ["database"]
    # and what the operator asked for, opening sessions included, was refused the same way
    for answer in operator:
        assert_clean(answer, allowed={503})
        assert code_of(answer) == "database_unavailable"

    # When it is back, the very next call succeeds, at once (pools reconnect while calls wait)
    back = ledger.add(gateway.invoke(token, run, "echo", "echo", {"text": "back"}))
    assert back.status_code == 200, back.text + gateway.log()
    assert back.elapsed.total_seconds() < 2.0
    # and so does every call after it, on both workers, and the operator's requests
    with ThreadPoolExecutor(max_workers=4) as pool:
        after = list(pool.map(lambda n: gateway.invoke(token, run, "echo", "echo", {"text": f"after {n}"}), range(12)))
    assert [(ledger.add(a).status_code, code_of(a)) for a in after] == [(200, "")] * 12, gateway.log()
    sessions = gateway.operator("GET", f"/runs/{run}/mcp/sessions")
    assert sessions.status_code == 200 and sessions.elapsed.total_seconds() < 2.0

    # And every 200 has its row, in one chain written by both workers without a fork or a gap;
    # the tool ran once more than that: the call that could not be recorded
    assert_evidence_complete(gateway, ledger, ordered=False)
    assert upstream_calls(upstream) - ran_before == ledger.statuses().count(200) + 1
