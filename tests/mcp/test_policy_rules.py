"""The builtin rules' ALLOW paths (deny paths are in test_policy_receipts), through the one copy
of the glob rule that enforcement uses, and receipts with a cut signature."""

from __future__ import annotations

import pytest

from maestro import bridge
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp import policy
from mcp.receipts import Decision, receipt_issue, receipt_verify
from mcp.services import registry
from mcp.services.registry import ServerSnapshot


def decide(*, policy_input: dict):
    """The final policy decision, as the invoke core takes it (on the data plane's loop)."""
    return bridge.run(policy.policy_final_decide(policy_input=policy_input))


def check(*, session_scopes=("mcp:invoke",), session_servers=(), server_scopes=(), tool_allow=(), tool_deny=(), tool="echo"):
    """The builtin decision for one call on server s1 ('files'): None (allow) or the deny code."""
    denial = policy.builtin_check_server_and_tool(
        session_scopes=frozenset(session_scopes), session_servers=tuple(session_servers), server_id="s1", server_name="files",
        server_scopes=list(server_scopes), tool_allow=list(tool_allow), tool_deny=list(tool_deny), tool=tool,
    )
    return None if denial is None else denial.code


def snapshot(*, tool_allow=(), tool_deny=()) -> ServerSnapshot:
    return ServerSnapshot(id="s1", name="files", url="https://files.example/mcp", enabled=True, scopes=(), tags=(),
                          tool_allow=tuple(tool_allow), tool_deny=tuple(tool_deny), timeout_ms=1000)


@pytest.mark.parametrize(("allow", "tool"), [(["echo"], "echo"), (["ec*"], "echo"), (["read_*", "e?ho"], "echo"), (["*"], "x")])
def test_a_tool_matching_a_non_empty_allow_list_is_allowed(allow, tool):
    assert check(tool_allow=allow, tool=tool) is None
    assert check(tool_allow=allow, tool=tool + "_not") in (None, "tool_not_allowed")  # the list really filters
    assert check(tool_allow=allow, tool="zzz") == ("tool_not_allowed" if allow != ["*"] else None)


def test_deny_wins_over_allow():
    assert check(tool_allow=["ec*"], tool_deny=["echo"]) == "tool_denied"
    assert check(tool_allow=["ec*"], tool_deny=["echo"], tool="ecco") is None


def test_globs_are_case_sensitive_and_whole_name():
    assert check(tool_allow=["Echo"]) == "tool_not_allowed"
    assert check(tool_allow=["ech"]) == "tool_not_allowed"
    assert check(tool_deny=["ECHO"]) is None


@pytest.mark.parametrize(("held", "expected"), [
    ({"mcp:invoke", "files:read", "files:write"}, None),
    ({"mcp:invoke", "files:read", "files:write", "other"}, None),
    ({"mcp:invoke", "files:read"}, "server_scope_missing"),
    ({"mcp:invoke", "files:write"}, "server_scope_missing"),
    ({"mcp:invoke"}, "server_scope_missing"),
])
def test_a_server_requiring_two_scopes_needs_both(held, expected):
    assert check(session_scopes=held, server_scopes=["files:read", "files:write"]) == expected


def test_the_missing_scope_is_named():
    denial = policy.builtin_check_server_and_tool(
        session_scopes=frozenset({"mcp:invoke", "files:read"}), session_servers=(), server_id="s1", server_name="files",
        server_scopes=["files:read", "files:write"], tool_allow=[], tool_deny=[], tool="echo",
    )
    assert "'files:write'" in denial.reason


def test_a_session_listing_the_server_may_use_it():
    assert check(session_servers=["s0", "s1"]) is None
    assert check(session_servers=["s0"]) == "server_not_allowed"


@pytest.mark.parametrize(("allow", "deny", "tool"), [
    ([], [], "echo"), (["ec*"], [], "echo"), (["ec*"], [], "read"), ([], ["ec*"], "echo"), (["*"], ["rm*"], "rm_rf"),
    (["a?c"], [], "abc"), (["[ab]*"], [], "cat"),
])
def test_the_registry_filter_is_the_enforced_rule(allow, deny, tool):
    # The registry API's filtered_out and enforcement must never disagree: one rule, two callers
    enforced = check(tool_allow=allow, tool_deny=deny, tool=tool)
    assert registry.tool_allowed(server=snapshot(tool_allow=allow, tool_deny=deny), tool_name=tool) is (enforced is None)


def test_the_scope_check_allows_a_session_holding_invoke():
    assert policy.builtin_check_scope(session_scopes=frozenset({"mcp:invoke"})) is None
    assert policy.builtin_check_scope(session_scopes=frozenset({"mcp:tools"})).code == "scope_missing"


# --- receipts ---------------------------------------------------------------------------------


def _receipt() -> str:
    decision = Decision(allow=True, reason="builtin rules allow", engine="builtin", policy="builtin/v1")
    return receipt_issue(decision=decision, input_digest="cd" * 32, run_id="run-1", sid="sid-1", server="files", tool="echo")


@pytest.mark.parametrize(("keep", "decodes"), [(0, True), (1, False), (10, True), (42, True)])
def test_a_truncated_or_empty_signature_does_not_verify(keep, decodes):
    receipt = _receipt()
    head, payload, signature = receipt.split(".")
    assert len(signature) == 43 and receipt_verify(receipt=receipt)[1]
    claims, valid = receipt_verify(receipt=f"{head}.{payload}.{signature[:keep]}")
    assert (claims is not None and claims["tool"] == "echo") is decodes  # one base64 character is not even bytes
    assert valid is False


def test_a_signature_with_extra_bytes_does_not_verify():
    receipt = _receipt()
    assert receipt_verify(receipt=receipt + "AAAA")[1] is False


# --- what a decision says (it becomes the signed receipt) ---------------------------------------


@pytest.mark.parametrize(("kwargs", "code", "names"), [
    (dict(session_servers=["s0"]), "server_not_allowed", "files"),
    (dict(server_scopes=["files:read"]), "server_scope_missing", "files:read"),
    (dict(tool_deny=["ec*"]), "tool_denied", "echo"),
    (dict(tool_allow=["read_*"]), "tool_not_allowed", "echo"),
])
def test_a_builtin_deny_says_deny_builtin_and_why(kwargs, code, names):
    args = dict(session_scopes=frozenset({"mcp:invoke"}), session_servers=(), server_id="s1", server_name="files",
                server_scopes=[], tool_allow=[], tool_deny=[], tool="echo")
    decision = policy.builtin_check_server_and_tool(**{**args, **kwargs})
    assert (decision.allow, decision.engine, decision.policy, decision.code) == (False, "builtin", "builtin/v1", code)
    assert isinstance(decision.reason, str) and names in decision.reason


def test_the_scope_deny_says_which_scope():
    decision = policy.builtin_check_scope(session_scopes=frozenset())
    assert (decision.allow, decision.engine, decision.policy) == (False, "builtin", "builtin/v1")
    assert "'mcp:invoke'" in decision.reason


def test_the_builtin_allow_is_an_allow():
    assert (policy.BUILTIN_ALLOW.allow, policy.BUILTIN_ALLOW.engine, policy.BUILTIN_ALLOW.code) == (True, "builtin", "")


@pytest.mark.parametrize("allow", [True, False])
def test_a_receipt_states_the_decision_and_its_reason(allow):
    decision = Decision(allow=allow, reason="because the test says so", engine="builtin", policy="builtin/v1")
    claims, valid = receipt_verify(receipt=receipt_issue(decision=decision, input_digest="ab" * 32, run_id="r", sid="s", server="f", tool="t"))
    assert valid and claims["decision"] == ("allow" if allow else "deny") and claims["reason"] == "because the test says so"


def test_a_receipt_with_another_prefix_or_more_parts_is_not_a_receipt():
    head, payload, signature = _receipt().split(".")
    assert receipt_verify(receipt=f"mr2.{payload}.{signature}") == (None, False)
    assert receipt_verify(receipt=f"{head}.{payload}.{signature}.{signature}") == (None, False)


text = st.text(st.characters(exclude_categories=("Cs",)))  # a lone surrogate has no canonical form


@settings(max_examples=200)
@given(reason=text, run=text, tool=text, allow=st.booleans())
def test_any_receipt_verifies_and_reads_back(reason, run, tool, allow):
    # base64url segments of any length and content: none may lose or gain a character on the way
    decision = Decision(allow=allow, reason=reason, engine="builtin", policy="builtin/v1")
    receipt = receipt_issue(decision=decision, input_digest="cd" * 32, run_id=run, sid="sid", server="files", tool=tool)
    claims, valid = receipt_verify(receipt=receipt)
    assert valid and (claims["reason"], claims["run"], claims["tool"]) == (reason, run, tool)


# --- OPA's answers, as decisions ----------------------------------------------------------------


@pytest.fixture
def opa(settings):
    from tests.support.opa import FakeOpa

    with FakeOpa() as server:
        settings.OPA_URL = server.url + "/"  # a trailing slash is not doubled
        settings.OPA_POLICY_PATH = "maestro/mcp/allow"
        settings.OPA_TIMEOUT_MS = 300
        yield server


@pytest.mark.parametrize(("result", "allow", "code", "reason"), [
    (True, True, "", "allowed by OPA"), (False, False, "policy_denied", "denied by OPA"),
    ({"allow": True}, True, "", "allowed by OPA"), ({"allow": False}, False, "policy_denied", "denied by OPA"),
])
def test_opa_decisions_carry_their_code_and_default_reason(opa, result, allow, code, reason):
    opa.result = result
    decision = decide(policy_input={"tool": "echo"})
    assert (decision.allow, decision.code, decision.reason) == (allow, code, reason)
    assert opa.requests[-1]["path"] == "/v1/data/maestro/mcp/allow"


@pytest.mark.parametrize("setup", [lambda o: setattr(o, "status", 500), lambda o: setattr(o, "result", ["x"]),
                                   lambda o: setattr(o, "raw_body", b"<html>")])
def test_an_opa_failure_is_a_deny_decision_of_the_opa_engine(opa, setup):
    setup(opa)
    with pytest.raises(policy.PolicyUnavailable) as caught:
        decide(policy_input={"tool": "echo"})
    decision = caught.value.decision
    assert (decision.allow, decision.engine, decision.policy, decision.code) == (False, "opa", "opa:maestro/mcp/allow", "policy_unavailable")
    assert caught.value.message.startswith("policy engine unavailable: ")


def test_an_unusable_opa_answer_keeps_its_decision_id(opa):
    opa.result = ["x"]
    with pytest.raises(policy.PolicyUnavailable) as caught:
        decide(policy_input={"tool": "echo"})
    assert caught.value.decision.decision_id


def test_an_opa_timeout_is_a_deny_of_the_opa_policy(opa):
    opa.delay_s = 1.0
    with pytest.raises(policy.PolicyUnavailable) as caught:
        decide(policy_input={"tool": "echo"})
    assert caught.value.decision.policy == "opa:maestro/mcp/allow"
    assert caught.value.decision.reason == "OPA did not answer within 300 ms"


def test_unusable_opa_answers_say_what_was_wrong(opa):
    opa.raw_body = b"<html>"
    with pytest.raises(policy.PolicyUnavailable) as caught:
        decide(policy_input={"tool": "echo"})
    assert caught.value.decision.reason == "OPA unreachable: JSONDecodeError"
    opa.raw_body, opa.result = None, "yes"
    with pytest.raises(policy.PolicyUnavailable) as caught:
        decide(policy_input={"tool": "echo"})
    assert caught.value.decision.reason == "OPA result is neither a boolean nor {allow, reason}"


def test_an_opa_reason_is_kept_to_500_characters(opa):
    opa.result = {"allow": False, "reason": "r" * 600}
    assert decide(policy_input={"tool": "echo"}).reason == "r" * 500
