"""Evidence: the chain never forks under concurrency, tampering is detected by the API and the
command, and a revoked session's upstream MCP session is closed."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from mcp.models import Invocation
from sessions_app.services import session_create, session_revoke
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import RUN, evidence, invoke, session_token
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
    record, token = session_create(run_id=RUN, scopes=["mcp:invoke"], created_by="test")
    assert invoke(client, token, server="stateful", tool="echo", arguments={"text": "x"}).status_code == 200
    # When the session is revoked, then the upstream sees its session DELETEd
    from tests.mcp.helpers import stats

    before = settled_deletes(sdk.legacy_sse)  # tool discovery's throwaway session is DELETEd in the background too
    session_revoke(run_id=RUN, sid=record.sid)
    deadline = time.monotonic() + 5  # the DELETE runs in the background
    while stats(sdk.legacy_sse).get("DELETE", 0) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(sdk.legacy_sse).get("DELETE", 0) == before + 1


@pytest.mark.django_db
def test_admin_shows_evidence_read_only_and_filterable(client, admin_api, sdk, django_user_model):
    register(admin_api, name="modern", url=sdk.modern_json.url())
    invoke(client, session_token(), server="modern", tool="echo", arguments={"text": "seen in admin"})
    row = evidence()[0]
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-12345"))
    listing = client.get("/admin/mcp/invocation/", {"status__exact": "success", "q": RUN})
    assert listing.status_code == 200 and RUN.encode() in listing.content
    detail = client.get(f"/admin/mcp/invocation/{row.pk}/change/")
    assert detail.status_code == 200 and b'name="status"' not in detail.content, "no editable fields"
    assert client.post(f"/admin/mcp/invocation/{row.pk}/delete/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_run_are_grouped_into_one_insert(monkeypatch):
    from django.db import connections

    from mcp.services import evidence as ev

    # Given a first writer held inside its INSERT while 19 more calls of the same run arrive
    real_insert, batches, first_inside, release = ev._insert, [], threading.Event(), threading.Event()

    def observed_insert(rows):
        batches.append(len(rows))
        if len(batches) == 1:
            first_inside.set()
            release.wait(10)
        real_insert(rows)

    monkeypatch.setattr(ev, "_insert", observed_insert)

    def append(n: int):
        try:
            return ev.evidence_append(entry=ev.EvidenceEntry(
                run_id="run-group", session_id="s", server_id="", server_name="srv", tool="echo", arguments_digest=str(n),
                result_digest="", status="success", error_code="", is_error=False, latency_us=n, receipt="", transport="http",
            ))
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        first = pool.submit(append, 0)
        assert first_inside.wait(10)
        rest = [pool.submit(append, n) for n in range(1, 20)]
        deadline = time.monotonic() + 10
        while len(ev._queue("run-group").pending) < 19 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        rows = [first.result()] + [f.result() for f in rest]

    # Then the 19 that waited were written together, and the chain is 1..20 without a gap
    assert batches == [1, 19]
    assert sorted(row.seq for row in rows) == list(range(1, 21))
    assert ev.evidence_verify(run_id="run-group") == {"chain": "valid", "length": 20, "head": max(rows, key=lambda r: r.seq).hash}
