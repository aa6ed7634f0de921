"""Receipts and the OPA engine, against an HTTP server speaking OPA's data API."""

import pytest

from maestro import bridge
from mcp import policy
from mcp.receipts import Decision, receipt_issue, receipt_verify
from tests.support.opa import FakeOpa
from tests.support.processes import run_manage

INPUT = {"run": "run-1", "tool": "echo", "server": {"id": "s1", "name": "files"}}


def decide(policy_input: dict):
    """The final policy decision, as the invoke core takes it (on the data plane's loop)."""
    return bridge.run(policy.policy_final_decide(policy_input=policy_input))


def issue(**overrides) -> str:
    fields = dict(decision=Decision(allow=False, reason="session lacks scope", engine="builtin", policy="builtin/v1"),
                  input_digest="ab" * 32, run_id="run-1", sid="sid-1", server="files", tool="echo")
    fields.update(overrides)
    return receipt_issue(**fields)


def test_receipt_round_trips_with_every_claim():
    claims, valid = receipt_verify(receipt=issue())
    assert valid
    assert claims["decision"] == "deny" and claims["engine"] == "builtin" and claims["policy"] == "builtin/v1"
    assert (claims["run"], claims["sid"], claims["server"], claims["tool"], claims["input"]) == ("run-1", "sid-1", "files", "echo", "ab" * 32)
    assert len(claims["rid"]) == 32 and claims["iat"] > 0


@pytest.mark.parametrize("tamper", [
    lambda r: r[:-2] + ("AA" if r[-2:] != "AA" else "BB"),  # signature altered
    lambda r: r.split(".")[0] + "." + issue(run_id="run-2").split(".")[1] + "." + r.split(".")[2],  # claims swapped
])
def test_tampered_receipt_fails_verification(tamper):
    claims, valid = receipt_verify(receipt=tamper(issue()))
    assert not valid


def test_receipt_from_another_key_fails():
    _, valid = receipt_verify(receipt=issue(), key=b"k" * 32)
    assert not valid


@pytest.mark.parametrize("garbage", ["", "mr1.x", "jwt.a.b", "mr1.!!!.???"])
def test_garbage_is_not_a_receipt(garbage):
    assert receipt_verify(receipt=garbage) == (None, False)


def test_receipt_command_prints_and_verifies():
    good = run_manage("mcp_receipt", "verify", issue())
    assert good.returncode == 0 and "signature valid" in good.stdout and '"decision": "deny"' in good.stdout
    bad = run_manage("mcp_receipt", "verify", issue()[:-3] + "xyz")
    assert bad.returncode != 0 and "INVALID" in bad.stderr


@pytest.fixture
def opa(settings):
    with FakeOpa() as server:
        settings.OPA_URL = server.url
        settings.OPA_POLICY_PATH = "maestro/mcp/allow"
        settings.OPA_TIMEOUT_MS = 300
        yield server


@pytest.mark.parametrize("result, allow, reason", [
    (True, True, "allowed by OPA"),
    (False, False, "denied by OPA"),
    ({"allow": False, "reason": "tool is off-hours"}, False, "tool is off-hours"),
    ({"allow": True, "reason": "ok"}, True, "ok"),
    (None, False, "undefined"),
])
def test_opa_answers_become_decisions(opa, result, allow, reason):
    opa.result = result
    decision = decide(INPUT)
    assert decision.allow is allow and reason in decision.reason
    assert decision.engine == "opa" and decision.policy == "opa:maestro/mcp/allow" and decision.decision_id
    assert opa.requests[-1] == {"path": "/v1/data/maestro/mcp/allow", "body": {"input": INPUT}}


@pytest.mark.parametrize("setup, reason", [
    (lambda o: setattr(o, "delay_s", 1.0), "did not answer within 300 ms"),
    (lambda o: setattr(o, "status", 500), "HTTP 500"),
    (lambda o: setattr(o, "raw_body", b"<html>"), "unreachable"),
    (lambda o: setattr(o, "result", ["allow"]), "neither a boolean"),
])
def test_opa_failure_denies_as_unavailable(opa, setup, reason):
    setup(opa)
    with pytest.raises(policy.PolicyUnavailable) as caught:
        decide(INPUT)
    assert caught.value.code == "policy_unavailable"
    assert not caught.value.decision.allow and reason in caught.value.decision.reason


def test_unreachable_opa_denies(settings):
    from tests.support.services import free_port

    settings.OPA_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(policy.PolicyUnavailable):
        decide(INPUT)


def test_without_opa_the_builtin_rules_have_the_final_word(settings):
    settings.OPA_URL = None
    assert decide(INPUT).engine == "builtin"


@pytest.mark.parametrize("kwargs, code", [
    (dict(session_servers=("other",)), "server_not_allowed"),
    (dict(server_scopes=["files:read"]), "server_scope_missing"),
    (dict(tool_deny=["ec*"]), "tool_denied"),
    (dict(tool_allow=["read_*"]), "tool_not_allowed"),
])
def test_builtin_rules_deny_with_their_own_code(kwargs, code):
    base = dict(session_scopes=frozenset({"mcp:invoke"}), session_servers=(), server_id="s1", server_name="files",
                server_scopes=[], tool_allow=[], tool_deny=[], tool="echo")
    assert policy.builtin_check_server_and_tool(**base) is None
    assert policy.builtin_check_server_and_tool(**{**base, **kwargs}).code == code
