"""Two gateway replicas (separate web processes on two ports, as behind a load balancer without
sticky routing) against one PostgreSQL and one Redis: either serves any session, continues any
upstream MCP session, hears any revocation within a second, and they extend one run's evidence
chain together without a fork."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.faults.support import Gateway, Ledger, assert_evidence_complete, code_of
from tests.support.services import wait_until


@pytest.fixture(scope="module")
def replicas(stack, gateway, stateful):
    """The package's gateway and a second one on the same PostgreSQL, Redis and settings."""
    gateway.register("stateful", stateful.url())
    with Gateway(stack, MCP_SESSIONS_PERSIST="true") as other:
        yield gateway, other


def handshakes(upstream) -> int:
    return httpx.get(upstream.url("/stats"), timeout=5).json().get("initialize", 0)


def whoami(replica: Gateway, token: str, run: str) -> str:
    answer = replica.invoke(token, run, "stateful", "whoami")
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["structuredContent"]["session"]


def test_a_session_opened_on_one_replica_works_on_the_other_in_the_same_upstream_session(replicas, stateful):
    one, two = replicas
    run = "faults-replicas-session"
    # Given a session opened through one replica, whose first call began an upstream MCP session
    token = one.open_session(run)["token"]
    first = whoami(one, token, run)
    before = handshakes(stateful)
    # When its calls go on through either replica
    sessions = [whoami(replica, token, run) for replica in (two, one, two, two)]
    # Then they all continue that upstream session: no other handshake
    assert first and sessions == [first] * 4
    assert handshakes(stateful) == before


def test_a_revocation_through_one_replica_is_refused_by_the_other_within_a_second(replicas, stack):
    one, two = replicas
    run = "faults-replicas-revoke"
    session = one.open_session(run)
    assert two.invoke(session["token"], run, "echo", "echo", {"text": "x"}).status_code == 200
    assert wait_until(stack.all_following, timeout=10)
    # When it is revoked through one replica
    assert one.revoke(run, session["sid"]).status_code == 204
    revoked_at = time.monotonic()
    # Then the other refuses it within a second, and from then on
    refused = wait_until(lambda: code_of(two.invoke(session["token"], run, "echo", "echo", {"text": "x"})) == "session_revoked", timeout=5)
    took = time.monotonic() - revoked_at
    assert refused and took < 1.0, f"still accepted {took:.2f}s after the revocation"
    assert [code_of(two.invoke(session["token"], run, "echo", "echo", {"text": "x"})) for _ in range(5)] == ["session_revoked"] * 5


def test_both_replicas_extend_one_chain_per_run_without_a_fork(replicas):
    one, two = replicas
    run, ledger = "faults-replicas-chain", Ledger("faults-replicas-chain")
    token = one.open_session(run)["token"]
    # When one run's calls go to both replicas at the same time (and to both workers of one)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: (one, two)[n % 2].invoke(token, run, "echo", "echo", {"text": f"call {n}"}), range(40)))
    # Then every call succeeded, and the run has one chain: seq 1..40, each row onto the one before
    assert [(ledger.add(a).status_code, code_of(a)) for a in answers] == [(200, "")] * 40, one.log() + two.log()
    rows = assert_evidence_complete(one, ledger, ordered=False)
    assert len(rows) == 40
    assert sorted(a.json()["evidence"]["seq"] for a in answers) == list(range(1, 41))
