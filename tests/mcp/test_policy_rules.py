"""The builtin rules' ALLOW paths (deny paths are in test_policy_receipts), through the one copy
of the glob rule that enforcement uses, and receipts with a cut signature."""

from __future__ import annotations

import pytest

from mcp import policy
from mcp.receipts import Decision, receipt_issue, receipt_verify
from mcp.services import registry
from mcp.services.registry import ServerSnapshot


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
