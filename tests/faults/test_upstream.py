"""Upstream faults under a real gateway process: the upstream killed in the middle of a call and
started again, and upstreams that answer garbage after the tool ran."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.faults.support import Ledger, assert_clean, assert_evidence_complete, code_of, upstream_calls
from tests.support.services import wait_until
from tests.upstreams import launch


def test_an_upstream_killed_mid_call_and_started_again(gateway):
    # Given a stateful upstream that a session already talks to (its upstream MCP session begun)
    victim = launch.start_sdk("faults-victim", "--mode", "stateful", "--response", "sse", "--family", "legacy")
    try:
        launch.wait_ready(victim)
        gateway.register("victim", victim.url())
        run, ledger = "faults-upstream-killed", Ledger("faults-upstream-killed")
        token = gateway.open_session(run)["token"]
        first = ledger.add(gateway.invoke(token, run, "victim", "whoami"))
        assert first.status_code == 200, first.text
        session_before = first.json()["result"]["structuredContent"]["session"]

        # When the upstream dies (SIGKILL) while a call is running in it
        seen = upstream_calls(victim)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(gateway.invoke, token, run, "victim", "sleep", {"seconds": 5})
            assert wait_until(lambda: upstream_calls(victim) > seen, timeout=10)
            victim.process.kill()
            killed = ledger.add(pending.result())
        # Then that call is a clean 502, and so is every call while the upstream is gone
        assert_clean(killed, allowed={502})
        while_down = [ledger.add(gateway.invoke(token, run, "victim", "echo", {"text": "anyone?"})) for _ in range(3)]
        for answer in while_down:
            assert_clean(answer, allowed={502})
            assert code_of(answer) == "upstream_unreachable"

        # When it is started again on its port (it has forgotten every MCP session)
        victim = launch.start_sdk("faults-victim", "--mode", "stateful", "--response", "sse", "--family", "legacy", port=victim.port)
        launch.wait_ready(victim)
        # Then the very next call succeeds through the same gateway, in a new upstream session
        back = ledger.add(gateway.invoke(token, run, "victim", "whoami"))
        assert back.status_code == 200, back.text
        assert back.json()["result"]["structuredContent"]["session"] not in (None, session_before)
        assert ledger.add(gateway.invoke(token, run, "victim", "echo", {"text": "back"})).status_code == 200
        # And every attempt has its row, the interrupted call included, in one valid chain
        assert_evidence_complete(gateway, ledger)
    finally:
        victim.stop()


def garbage_calls(faulty, path: str) -> int:
    return httpx.get(faulty.url("/calls"), timeout=5).json().get(path, 0)


def test_upstreams_answering_garbage_after_the_tool_ran(gateway, faulty, upstream):
    # Given upstreams that run the tool, then answer bytes that are not JSON, a result holding
    # NaN, or nothing at all (the connection dropped)
    bad = {"garbage": "/mcp-garbage", "nan": "/mcp-nan", "dropper": "/mcp-drop"}
    for name, path in bad.items():
        gateway.register(name, faulty.url(path))
    run, ledger = "faults-upstream-garbage", Ledger("faults-upstream-garbage")
    token = gateway.open_session(run)["token"]
    ran_before = {path: garbage_calls(faulty, path) for path in bad.values()}
    good_before = upstream_calls(upstream)

    # When good and bad calls of one run go through at the same time (their rows share batches)
    with ThreadPoolExecutor(max_workers=8) as pool:
        good = [pool.submit(gateway.invoke, token, run, "echo", "echo", {"text": f"good {n}"}) for n in range(16)]
        wrong = [pool.submit(gateway.invoke, token, run, name, "echo") for name in bad for _ in range(2)]
        answers = [ledger.add(f.result()) for f in good + wrong]

    # Then the good ones succeed, each bad one is a clean 502 naming what went wrong
    assert [(a.status_code, code_of(a)) for a in answers[:16]] == [(200, "")] * 16, gateway.log()
    for answer in answers[16:]:
        assert_clean(answer, allowed={502})
    assert sorted({code_of(a) for a in answers[16:]}) == ["upstream_invalid_result", "upstream_not_mcp", "upstream_unreachable"]
    # And no tool ran twice (a call that may have run is never sent again), nor without its row
    assert {path: garbage_calls(faulty, path) - ran_before[path] for path in bad.values()} == {path: 2 for path in bad.values()}
    assert upstream_calls(upstream) - good_before == 16
    assert_evidence_complete(gateway, ledger, ordered=False)
    # And the gateway is unharmed: the next calls, good and bad, are answered as before
    assert ledger.add(gateway.invoke(token, run, "echo", "echo", {"text": "after"})).status_code == 200
    assert code_of(ledger.add(gateway.invoke(token, run, "garbage", "echo"))) == "upstream_not_mcp"
    assert_evidence_complete(gateway, ledger, ordered=False)
