"""Evidence: the chain never forks under concurrency, tampering is detected by the API and the
command, and a revoked session's upstream MCP session is closed."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from maestro import bridge
from mcp.models import Invocation
from mcp.services.evidence import evidence_verify
from sessions_app.services import session_revoke
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import client  # noqa: F401  (the fixture: the web door as deployed, in this process)
from tests.mcp.invoke_helpers import RUN, evidence, invoke, open_session, session_token
from tests.support.processes import WebServer, project_env, run_manage


def evidence_api(api, run_id: str = RUN, **params):
    return api.get(f"/api/maestro/v1/runs/{run_id}/mcp/evidence", params)


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_calls_across_two_workers_give_one_gap_free_chain(admin_api, sdk):
    # Given the gateway as deployed: two web worker processes sharing PostgreSQL and Redis.
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token()
    with WebServer(project_env(WEB_CONCURRENCY="2", MAESTRO_HTTP_THREADS="16", MCP_SESSION_MAX_IN_FLIGHT="100")) as web:
        url = f"{web.base_url}/api/maestro/v1/runs/{RUN}/mcp/invoke"
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
            def call(n: int) -> int:
                body = {"server": "modern", "tool": "echo", "arguments": {"text": f"call {n}"}}
                return http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}).status_code

            # When 50 invocations of one run arrive at once
            with ThreadPoolExecutor(max_workers=50) as pool:
                statuses = list(pool.map(call, range(50)))
    # Then all succeed, and the chain is 1..50 with every link intact.
    assert statuses == [200] * 50
    rows = evidence()
    assert [row.seq for row in rows] == list(range(1, 51))
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    result = run_manage("mcp_evidence", "verify", RUN)
    assert result.returncode == 0 and "chain valid (50 rows" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_tampering_is_detected_by_the_api_and_the_command(client, admin_api, sdk):
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token()
    for n in range(4):
        assert invoke(client, token, server="modern", tool="echo", arguments={"text": str(n)}).status_code == 200
    listed = evidence_api(admin_api).json()
    assert listed["chain"] == "valid" and listed["count"] == 4 and [r["seq"] for r in listed["results"]] == [1, 2, 3, 4]
    assert run_manage("mcp_evidence", "verify", RUN).returncode == 0

    # When someone rewrites history in the database
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET status = 'denied' WHERE run_id = %s AND seq = 3", [RUN])

    broken = evidence_api(admin_api).json()
    assert broken["chain"] == "broken" and broken["verification"]["at_seq"] == 3
    result = run_manage("mcp_evidence", "verify", RUN)
    assert result.returncode != 0 and "BROKEN at seq 3" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_deleted_row_is_detected(client, admin_api, sdk):
    register(admin_api, name="modern", url=sdk.modern_json.url())
    token = session_token()
    for n in range(3):
        invoke(client, token, server="modern", tool="echo", arguments={"text": str(n)})
    Invocation.objects.filter(run_id=RUN, seq=2).delete()
    assert evidence_api(admin_api).json()["verification"]["at_seq"] == 2


@pytest.mark.django_db
def test_evidence_api_needs_an_operator_and_a_valid_run(admin_api):
    from rest_framework.test import APIClient

    assert evidence_api(APIClient()).status_code == 401
    assert evidence_api(admin_api, run_id="bad run!").status_code in (400, 404)
    empty = evidence_api(admin_api, run_id="never-ran").json()
    assert empty["count"] == 0 and empty["chain"] == "valid"


def settled_deletes(upstream) -> int:
    from tests.mcp.helpers import stats

    last, stable_since = stats(upstream).get("DELETE", 0), time.monotonic()
    while time.monotonic() - stable_since < 0.5:
        time.sleep(0.05)
        now = stats(upstream).get("DELETE", 0)
        if now != last:
            last, stable_since = now, time.monotonic()
    return last


@pytest.mark.django_db
def test_revoking_a_session_closes_its_upstream_session(client, admin_api, sdk):
    # Given a stateful upstream on which the session opened an MCP session
    register(admin_api, name="stateful", url=sdk.legacy_sse.url())
    record, token = open_session()
    assert invoke(client, token, server="stateful", tool="echo", arguments={"text": "x"}).status_code == 200
    # When the session is revoked, then the upstream sees its session DELETEd
    from tests.mcp.helpers import stats

    before = settled_deletes(sdk.legacy_sse)  # tool discovery's throwaway session is DELETEd in the background too
    session_revoke(run_id=RUN, sid=record.sid)
    deadline = time.monotonic() + 5  # the DELETE runs in the background
    while stats(sdk.legacy_sse).get("DELETE", 0) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(sdk.legacy_sse).get("DELETE", 0) == before + 1


def test_admin_shows_evidence_read_only_and_filterable(client, admin_api, sdk, django_user_model):
    from django.test import Client

    register(admin_api, name="modern", url=sdk.modern_json.url())
    invoke(client, session_token(), server="modern", tool="echo", arguments={"text": "seen in admin"})
    row = evidence()[0]
    browser = Client()
    browser.force_login(django_user_model.objects.create_superuser("root", password="pw-root-12345"))
    listing = browser.get("/admin/mcp/invocation/", {"status__exact": "success", "q": RUN})
    assert listing.status_code == 200 and RUN.encode() in listing.content
    detail = browser.get(f"/admin/mcp/invocation/{row.pk}/change/")
    assert detail.status_code == 200 and b'name="status"' not in detail.content, "no editable fields"
    assert browser.post(f"/admin/mcp/invocation/{row.pk}/delete/").status_code == 403


def entry(n: int, run_id: str = "run-group"):
    from mcp.services.evidence import EvidenceEntry

    return EvidenceEntry(
        run_id=run_id, session_id="s", server_id="", server_name="srv", tool="echo", arguments_digest=str(n),
        result_digest="", status="success", error_code="", is_error=False, latency_us=n, receipt="", transport="http",
    )


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_are_written_together_in_one_insert():
    from mcp.services import evidence_writer

    async def scenario():
        writer = evidence_writer.writer()
        real_write, sizes, inside, release = writer._write, [], asyncio.Event(), asyncio.Event()

        async def observed(batch):
            sizes.append(len(batch))
            if len(sizes) == 1:
                inside.set()
                await release.wait()
            await real_write(batch)

        writer._write = observed
        try:
            # Given a first row whose INSERT is under way while 19 more calls arrive (two runs)
            first = asyncio.ensure_future(evidence_writer.evidence_append(entry=entry(0)))
            await inside.wait()
            rest = [asyncio.ensure_future(evidence_writer.evidence_append(entry=entry(n, f"run-group-{n % 2}"))) for n in range(1, 20)]
            while len(writer._queue) < 19:
                await asyncio.sleep(0)  # yield until every call has queued its row
            release.set()
            return sizes, await asyncio.gather(first, *rest)
        finally:
            del writer._write

    sizes, rows = bridge.run(scenario())
    # Then the 19 that waited went in ONE statement, across runs, and every chain is gap-free
    assert sizes == [1, 19]
    assert sorted(row.seq for row in rows[1:]) == sorted(list(range(1, 11)) + list(range(1, 10)))
    for run_id, length in (("run-group", 1), ("run-group-0", 9), ("run-group-1", 10)):
        assert evidence_verify(run_id=run_id)["chain"] == "valid" and evidence_verify(run_id=run_id)["length"] == length


def _rows_read(plan: dict) -> float:
    """Rows a plan node and its children took from a table or index (kept or filtered out)."""
    loops = plan.get("Actual Loops", 1)
    own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops if "Relation Name" in plan or "Index Name" in plan else 0
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.django_db
def test_reading_chain_heads_costs_one_index_step_per_run_however_long_the_run():
    from mcp.services.evidence_writer import _heads_query
    from tests.mcp.evidence_rows import write_chain

    # Given a long run, a short one, and a run with no rows yet
    long_head = write_chain("heads-long", 3000)
    short_head = write_chain("heads-short", 2)
    sql, params = _heads_query(["heads-long", "heads-short", "heads-none"])
    with connection.cursor() as cursor:
        # When the writer reads their heads (as it does before every locked batch)
        cursor.execute(sql, params)
        heads = sorted(cursor.fetchall())
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0][0]["Plan"]
    # Then each run's last row comes back, and the database read about one row per run, not the run
    assert heads == [("heads-long", 3000, long_head), ("heads-short", 2, short_head)]
    assert _rows_read(plan) <= 3, plan
