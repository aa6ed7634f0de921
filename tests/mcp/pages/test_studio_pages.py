"""Conductor Studio: the run index, the run's "Tools & Evidence" tab (sessions, callable tools,
timeline, chain badge), a row's detail, export, revoke and re-verify; bounded queries and time."""

from __future__ import annotations

import re
import time

import pytest
from django.db import connection
from django.utils import timezone

from mcp.models import McpServer
from mcp.receipts import Decision, receipt_issue
from mcp.services import evidence_chain
from sessions_app.services import session_revoke
from tests.sessions_app.helpers import authenticate
from tests.mcp.evidence_rows import write_chain
from tests.mcp.pages.helpers import operator, server, session, text

# Sessions are opened through the data plane's service, whose writes (a persisted session) and
# server look-ups (a session naming servers) use connections of their own: a transactional database.
pytestmark = pytest.mark.django_db(transaction=True)
RUN = "run-studio"


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(operator(django_user_model, staff=True))
    return client


def tab(client, run_id: str = RUN, **params):
    response = client.get(f"/studio/runs/{run_id}", params)
    assert response.status_code == 200, response.content[:500]
    return response


def seqs(response) -> list[int]:
    return [int(n) for n in re.findall(r'<td><a href="/studio/runs/[^/]+/evidence/\d+">#(\d+)</a></td>', response.content.decode())]


CARDS = {"Sessions": "sessions-h", "Tools the run may call": "tools-h", "Evidence": "evidence-h"}


def section(response, heading: str) -> str:
    """The text of one card of the tab."""
    html = response.content.decode()
    start = html.index(f'aria-labelledby="{CARDS[heading]}"')
    return text(type("Part", (), {"content": html[start: html.index("</section>", start)].encode()}))


def with_tools(name: str, *tool_names: str, **fields):
    created = server(name, **fields)
    McpServer.objects.filter(pk=created.pk).update(
        tools_cache=[{"name": n, "description": f"{n} it", "inputSchema": {"type": "object"}} for n in tool_names], tools_fetched_at=timezone.now(),
    )
    return created


def signed(decision: Decision, seq: int) -> dict:
    return {"receipt": receipt_issue(decision=decision, input_digest="d" * 64, run_id=RUN, sid="s" * 32, server="alpha", tool="echo")}


ALLOW = Decision(allow=True, reason="builtin rules allow", engine="builtin", policy="builtin/v1")
DENY = Decision(allow=False, reason="tool 'echo' is denied on server 'alpha'", engine="builtin", policy="builtin/v1", code="tool_denied")


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_show_scopes_servers_times_and_status(admin):
    files = server("files")
    live, _ = session(RUN, scopes=("mcp:invoke", "mcp:tools"), servers=["files"])
    gone, _ = session(RUN)
    session_revoke(run_id=RUN, sid=gone.sid)
    rows = section(tab(admin), "Sessions")
    assert f"{live.sid[:8]} mcp:invoke mcp:tools files " in rows and "active" in rows
    assert f"{gone.sid[:8]} mcp:invoke any " in rows and "revoked" in rows
    assert "in 59 min" in rows or "in 1 h" in rows, "expiry with a relative hint"
    assert files.name in rows


def test_only_the_newest_sessions_are_listed_with_the_total(admin, settings):
    settings.MCP_SESSIONS_PERSIST = True
    for _ in range(53):
        session(RUN)
    assert "Sessions newest 50 of 53" in text(tab(admin))


# --- tools --------------------------------------------------------------------------------


def test_the_tools_each_active_session_may_call_per_server(admin):
    with_tools("files", "read", "write", "rm_rf", tool_deny=["rm_*"])
    with_tools("github", "search", scopes=["repo:read"])
    with_tools("off", "anything", enabled=False)
    session(RUN)  # no server list: every server whose scopes it holds
    cards = section(tab(admin), "Tools the run may call")
    assert "files 2 of 3 tools callable" in cards and "read read it" in cards and "rm_rf" not in cards
    assert "github 0 of 1 tools callable" in cards, "github requires repo:read"
    assert "off disabled: no calls" in cards


def test_a_session_limited_to_one_server_and_one_without_invoke(admin):
    with_tools("files", "read")
    with_tools("github", "search")
    limited, _ = session(RUN, servers=["github"])
    lister, _ = session(RUN, scopes=("mcp:tools",))
    cards = section(tab(admin), "Tools the run may call")
    assert "files" not in cards and "github 1 of 1 tools callable" in cards
    assert f"Session {lister.sid[:8]} lacks mcp:invoke: it can call no tool." in cards
    assert f"callable by session {limited.sid[:8]}" in cards


def test_no_active_session_means_no_callable_tool(admin):
    with_tools("files", "read")
    record, _ = session(RUN)
    session_revoke(run_id=RUN, sid=record.sid)
    assert "No active session may invoke: the run can call nothing right now." in text(tab(admin))


# --- the timeline ---------------------------------------------------------------------------


def test_the_timeline_is_newest_first_and_paged_by_seq(admin):
    write_chain(RUN, 120)
    first = tab(admin)
    assert seqs(first) == list(range(120, 70, -1))
    older = tab(admin, before=71)
    assert seqs(older) == list(range(70, 20, -1))
    assert seqs(tab(admin, before=21)) == list(range(20, 0, -1))
    assert seqs(tab(admin, after=70)) == list(range(120, 70, -1)), "newer than #70"
    assert "older →" in text(first) and "← newer" not in text(first) and "← newer" in text(older)


def test_the_timeline_shows_each_call_with_its_policy_decision(admin):
    write_chain(RUN, 2, shape=lambda seq: {**(signed(ALLOW, seq) if seq == 1 else signed(DENY, seq)),
                                          **({"status": "denied", "error_code": "tool_denied"} if seq == 2 else {})})
    rows = section(tab(admin), "Evidence")
    assert "#2" in rows and "echo alpha http denied tool_denied" in rows and "deny tool 'echo' is denied on server 'alpha'" in rows
    assert "echo alpha http success" in rows and "allow builtin rules allow" in rows


@pytest.mark.parametrize("params, expected", [
    ({"status": "error"}, [100, 50]),
    ({"status": "denied"}, [97]),
    ({"server": "beta", "tool": "add"}, [90, 75, 60, 45, 30, 15]),
])
def test_the_timeline_filters_by_status_server_and_tool(admin, params, expected):
    write_chain(RUN, 100)
    assert seqs(tab(admin, **params)) == expected


@pytest.mark.parametrize("params", [{"status": "weird"}, {"before": "abc"}, {"server": "x" * 65}])
def test_a_bad_timeline_filter_is_a_400_page(admin, params):
    assert admin.get(f"/studio/runs/{RUN}", params).status_code == 400


def test_a_malformed_run_id_is_a_400_page(admin):
    response = admin.get("/studio/runs/bad%20run!")
    assert response.status_code == 400 and "run_id:" in text(response)


# --- the chain badge ------------------------------------------------------------------------


def test_the_badge_says_how_far_the_chain_is_verified(admin, monkeypatch):
    write_chain(RUN, 30)
    assert "chain verified through #30" in text(tab(admin))
    monkeypatch.setattr(evidence_chain, "PAGE_BUDGET_S", 0.0)
    write_chain("run-long", evidence_chain.CHUNK + 5)
    assert f"chain verified through #{evidence_chain.CHUNK} of {evidence_chain.CHUNK + 5} (verifying)" in text(tab(admin, "run-long"))


def test_a_tampered_row_on_screen_breaks_the_badge_and_is_marked(admin):
    write_chain(RUN, 30)
    tab(admin)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET error_code = 'x' WHERE run_id = %s AND seq = 28", [RUN])
    page = tab(admin)
    assert "chain broken at #28" in text(page) and "Row #28: row content does not match its hash." in text(page)
    assert re.search(r'<tr class="broken-row">\s*<td><a href="/studio/runs/run-studio/evidence/28">', page.content.decode())
    assert "chain broken at #28" in text(tab(admin, before=5)), "recorded: every later view says so"


def test_re_verifying_from_the_first_row_finds_an_edit_out_of_view(admin):
    write_chain(RUN, 200)
    tab(admin)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET tool = 'x' WHERE run_id = %s AND seq = 3", [RUN])
    assert "chain verified through #200" in text(tab(admin))
    done = admin.post(f"/studio/runs/{RUN}/verify", follow=True)
    assert "Verified again from #1: chain broken at #3." in text(done)


def test_the_live_poll_reports_the_head_and_the_badge(admin):
    write_chain(RUN, 7)
    body = admin.get(f"/studio/runs/{RUN}/live").json()
    assert body["head_seq"] == 7 and body["chain"]["state"] == "valid" and body["chain"]["label"] == "chain verified through #7"


# --- a row, export, revoke --------------------------------------------------------------------


def test_a_row_shows_its_decoded_receipt_digests_and_checks(admin):
    write_chain(RUN, 3, shape=lambda seq: signed(DENY, seq) if seq == 2 else {})
    page = text(admin.get(f"/studio/runs/{RUN}/evidence/2"))
    assert "signature valid" in page and "Decision deny Reason tool 'echo' is denied on server 'alpha' Engine builtin builtin/v1" in page
    assert "Content matches its hash Link follows #1" in page and "a" * 64 in page and "b" * 64 in page


def test_a_forged_receipt_and_an_edited_row_show_on_the_row(admin):
    write_chain(RUN, 2, shape=lambda seq: signed(ALLOW, seq))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET receipt = receipt || 'x', tool = 'y' WHERE run_id = %s AND seq = 2", [RUN])
    page = text(admin.get(f"/studio/runs/{RUN}/evidence/2"))
    assert "signature invalid" in page and "Content does not match its hash" in page


def test_an_upstream_error_is_explained_on_the_row(admin):
    write_chain(RUN, 1, shape=lambda seq: {"status": "error", "error_code": "upstream_not_mcp"})
    assert "Error upstream_not_mcp It answered, but not in MCP" in text(admin.get(f"/studio/runs/{RUN}/evidence/1"))


def test_an_unknown_row_is_a_404_page(admin):
    write_chain(RUN, 1)
    response = admin.get(f"/studio/runs/{RUN}/evidence/9")
    assert response.status_code == 404 and "has no evidence row #9" in text(response)


def test_the_export_is_a_streamed_jsonl_download(admin):
    write_chain(RUN, 4)
    response = admin.get(f"/studio/runs/{RUN}/evidence.jsonl")
    assert response.streaming and response["Content-Disposition"] == f'attachment; filename="evidence-{RUN}.jsonl"'
    assert len(b"".join(response.streaming_content).splitlines()) == 4


def test_revoking_from_the_page_asks_first_then_refuses_the_token(admin):
    record, token = session(RUN)
    confirm = admin.get(f"/studio/runs/{RUN}/sessions/{record.sid}/revoke")
    assert "401 session_revoked" in text(confirm)
    authenticate(token=token, run_id=RUN)  # still good after looking
    done = admin.post(f"/studio/runs/{RUN}/sessions/{record.sid}/revoke", follow=True)
    assert f"Session {record.sid[:8]} is revoked" in text(done)
    from maestro.errors import Unauthenticated

    with pytest.raises(Unauthenticated, match="revoked"):
        authenticate(token=token, run_id=RUN)


def test_revoking_another_runs_session_is_a_404(admin):
    record, _ = session("run-other")
    assert admin.post(f"/studio/runs/{RUN}/sessions/{record.sid}/revoke").status_code == 404


# --- the run index ----------------------------------------------------------------------------


def test_the_run_index_lists_runs_with_calls_and_errors(admin):
    write_chain("run-old", 10, start=timezone.now() - timezone.timedelta(hours=2))
    write_chain("run-new", 100, start=timezone.now() - timezone.timedelta(minutes=5))
    page = admin.get("/studio/runs")
    listed = text(page)
    assert listed.index("run-new") < listed.index("run-old")
    assert "run-new 100 2 1 chain verified through #100" in listed and "run-old 10 0 0" in listed
    assert 'href="/studio/runs/run-new"' in page.content.decode()


def test_the_run_index_opens_a_run_by_id(admin):
    response = admin.get("/studio/runs", {"run": "run-42"})
    assert response.status_code == 302 and response["Location"] == "/studio/runs/run-42"
    assert admin.get("/studio/runs", {"run": "no way"}).status_code == 400


def test_the_registry_links_to_the_run_index(admin):
    assert 'href="/studio/runs"' in admin.get("/mcp/registry").content.decode()


# --- cost -------------------------------------------------------------------------------------


def test_the_run_tab_costs_the_same_queries_for_few_or_many_rows_and_sessions(admin, django_assert_max_num_queries, settings):
    settings.MCP_SESSIONS_PERSIST = True
    with_tools("files", "read")
    session(RUN)
    write_chain(RUN, 3)
    with django_assert_max_num_queries(30) as few:
        tab(admin)
    few = len(few.captured_queries)  # now: the next request clears Django's query log
    for _ in range(40):
        session(RUN)
    write_chain("run-many", 400)
    for _ in range(40):
        session("run-many")
    tab(admin, "run-many")  # the first view walks the chain; what follows is the steady state
    with django_assert_max_num_queries(few):
        tab(admin, "run-many")


@pytest.mark.slow
def test_a_run_of_100000_rows_opens_in_under_a_second(admin):
    write_chain(RUN, 100_000)
    started = time.monotonic()
    page = tab(admin)
    cold = time.monotonic() - started
    assert seqs(page)[0] == 100_000 and "(verifying)" in text(page), "the first view verifies one budget's worth"
    started = time.monotonic()
    tab(admin, status="denied")
    filtered = time.monotonic() - started
    started = time.monotonic()
    tab(admin, before=50)
    deep = time.monotonic() - started
    assert max(cold, filtered, deep) < 1.0, (cold, filtered, deep)
