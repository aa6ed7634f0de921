"""OPA timing out under a running gateway: calls are denied with a clean 503 and a signed deny
receipt (fail closed, the tool never runs), recorded as denials, and allowed again as soon as OPA
answers in time, without a restart."""

from __future__ import annotations

import pytest

from mcp.receipts import receipt_verify
from tests.faults.support import Gateway, Ledger, assert_clean, assert_evidence_complete, code_of, upstream_calls
from tests.support.opa import FakeOpa

TIMEOUT_MS = 300


@pytest.fixture(scope="module")
def opa():
    with FakeOpa() as server:
        yield server


@pytest.fixture(scope="module")
def guarded(stack, opa, upstream):
    """A gateway whose final policy decision is OPA's (the fake in this process, on loopback)."""
    with Gateway(stack, workers=1, OPA_URL=opa.url, OPA_TIMEOUT_MS=str(TIMEOUT_MS)) as gateway:
        gateway.register("echo", upstream.url())
        yield gateway


def decision(answer) -> dict:
    claims, valid = receipt_verify(receipt=answer.headers["x-ig-policy-receipt"])
    assert valid
    return claims


def test_opa_timing_out_and_answering_again(guarded, opa, upstream):
    run, ledger = "faults-opa", Ledger("faults-opa")
    token = guarded.open_session(run)["token"]
    ran_before = upstream_calls(upstream)
    opa.result, opa.delay_s = {"allow": True, "reason": "approved"}, 0.0
    allowed = ledger.add(guarded.invoke(token, run, "echo", "echo", {"text": "before"}))
    assert allowed.status_code == 200 and decision(allowed)["engine"] == "opa"

    # When OPA answers later than OPA_TIMEOUT_MS
    opa.delay_s = 3 * TIMEOUT_MS / 1000
    slow = [ledger.add(guarded.invoke(token, run, "echo", "echo", {"text": "while slow"})) for _ in range(2)]
    # Then each call is denied at once, in the one error shape, with a signed deny receipt
    for answer in slow:
        assert_clean(answer, allowed={503})
        assert code_of(answer) == "policy_unavailable"
        assert answer.elapsed.total_seconds() < opa.delay_s
        assert decision(answer)["decision"] == "deny"
    # and the tool did not run
    assert upstream_calls(upstream) - ran_before == 1

    # When OPA answers in time again, the next call is allowed: nothing to restart
    opa.delay_s = 0.0
    back = ledger.add(guarded.invoke(token, run, "echo", "echo", {"text": "back"}))
    assert back.status_code == 200, back.text
    assert upstream_calls(upstream) - ran_before == 2
    # And every decision, allow and deny, is a row of one valid chain, with its receipt
    rows = assert_evidence_complete(guarded, ledger)
    assert [r["receipt"] for r in rows] == [a.headers["x-ig-policy-receipt"] for a in ledger.answers]
