"""The evidence API and the JSONL export: pages by seq, the chain verified incrementally, the
export streamed and verifiable offline with `mcp_evidence verify --file`."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from mcp.services import evidence_chain
from tests.mcp.evidence_rows import write_chain
from tests.support.processes import project_env, run_manage

pytestmark = pytest.mark.django_db
RUN = "run-api"


def evidence(api, run_id: str = RUN, **params):
    return api.get(f"/api/maestro/v1/runs/{run_id}/mcp/evidence", params)


def export(api, run_id: str = RUN, **headers) -> bytes:
    response = api.get(f"/api/maestro/v1/runs/{run_id}/mcp/evidence/export", **headers)
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert response.streaming, "the export is streamed, never built in memory"
    return b"".join(response.streaming_content)


def after_seq(link: str | None) -> str | None:
    return None if link is None else parse_qs(urlsplit(link).query)["after_seq"][0]


def test_pages_follow_the_chain_by_seq_and_count_is_its_length(admin_api):
    write_chain(RUN, 25)
    first = evidence(admin_api, limit=10).json()
    assert first["count"] == 25 and [r["seq"] for r in first["results"]] == list(range(1, 11))
    assert first["previous"] is None and after_seq(first["next"]) == "10"
    seen = [r["seq"] for r in first["results"]]
    link = first["next"]
    while link:
        page = admin_api.get(link).json()
        seen += [r["seq"] for r in page["results"]]
        link = page["next"]
    assert seen == list(range(1, 26)), "next links walk every row once"
    middle = evidence(admin_api, after_seq=12, limit=5).json()
    assert [r["seq"] for r in middle["results"]] == [13, 14, 15, 16, 17] and after_seq(middle["previous"]) == "7"


def test_offset_still_pages_as_before(admin_api):
    write_chain(RUN, 12)
    page = evidence(admin_api, offset=10, limit=5).json()
    assert [r["seq"] for r in page["results"]] == [11, 12] and page["next"] is None


def test_the_chain_is_reported_as_far_as_it_is_verified(admin_api, monkeypatch):
    # Given a chain longer than one request may hash
    write_chain(RUN, evidence_chain.CHUNK + 40)
    monkeypatch.setattr(evidence_chain, "PAGE_BUDGET_S", 0.0)
    # When the API is asked, then it says how far it got, and the next request goes on
    first = evidence(admin_api, limit=5).json()
    assert first["chain"] == "pending"
    assert first["verification"]["verified_through"] == evidence_chain.CHUNK and first["verification"]["length"] == evidence_chain.CHUNK + 40
    assert evidence(admin_api, limit=5).json()["chain"] == "valid"


def test_a_tampered_row_on_the_requested_page_is_reported_at_once(admin_api):
    from django.db import connection

    write_chain(RUN, 30)
    assert evidence(admin_api).json()["chain"] == "valid"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET latency_us = 1 WHERE run_id = %s AND seq = 21", [RUN])
    broken = evidence(admin_api, after_seq=20, limit=5).json()
    assert broken["chain"] == "broken" and broken["verification"]["at_seq"] == 21
    assert broken["verification"]["reason"] == "row content does not match its hash"


@pytest.mark.parametrize("params, field", [({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"after_seq": "-1"}, "after_seq"), ({"offset": "x"}, "offset")])
def test_bad_paging_parameters_are_a_400_naming_them(admin_api, params, field):
    response = evidence(admin_api, **params)
    assert response.status_code == 400 and response.json()["error"]["details"] == {"field": field}


def test_the_export_is_one_line_per_row_and_verifies_offline(admin_api, tmp_path):
    write_chain(RUN, 1203)  # more than two read chunks
    body = export(admin_api)
    lines = body.splitlines()
    assert len(lines) == 1203 and json.loads(lines[0])["seq"] == 1 and json.loads(lines[-1])["seq"] == 1203
    path = tmp_path / "run.jsonl"
    path.write_bytes(body)
    result = run_manage("mcp_evidence", "verify", "--file", str(path), RUN, env=project_env())
    assert result.returncode == 0 and f"run {RUN} ({path}): chain valid (1203 rows" in result.stdout


def test_the_export_answers_a_client_that_asks_for_json_lines(admin_api):
    write_chain(RUN, 2)
    assert len(export(admin_api, HTTP_ACCEPT="application/x-ndjson").splitlines()) == 2


def test_an_edited_export_fails_offline_verification_at_the_edited_row(admin_api, tmp_path):
    write_chain(RUN, 10)
    lines = export(admin_api).splitlines()
    row = json.loads(lines[6])
    row["tool"] = "something-else"
    lines[6] = json.dumps(row).encode()
    path = tmp_path / "edited.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = run_manage("mcp_evidence", "verify", "--file", str(path))
    assert result.returncode == 1 and "chain BROKEN at seq 7: row content does not match its hash" in result.stderr


ROW = {**{name: "x" for name in evidence_chain.ROW_FIELDS}, "seq": 1, "latency_us": 5, "is_error": False}


@pytest.mark.parametrize("content, message", [
    (b"not json\n", "line 1: not JSON"),
    (b"[1, 2]\n", "line 1: not a JSON object"),
    (b'{"seq": 1}\n', "line 1: no 'id' field"),
    (json.dumps({**ROW, "seq": "1"}).encode(), "line 1: 'seq' must be a JSON integer"),
    (json.dumps({**ROW, "status": ["success"]}).encode(), "line 1: 'status' must be a JSON string"),
    (b"", "no evidence rows in the file"),
])
def test_a_file_that_is_not_an_export_is_refused_clearly(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    result = run_manage("mcp_evidence", "verify", "--file", str(path))
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_an_export_can_be_verified_from_stdin(admin_api):
    import subprocess

    from tests.support.processes import PYTHON, ROOT

    write_chain(RUN, 5)
    result = subprocess.run([PYTHON, "manage.py", "mcp_evidence", "verify", "--file", "-"], input=export(admin_api), cwd=ROOT,
                            env=project_env(), capture_output=True, timeout=60)
    assert result.returncode == 0 and b"chain valid (5 rows" in result.stdout


def test_a_file_of_another_run_is_refused(admin_api, tmp_path):
    write_chain(RUN, 3)
    path = tmp_path / "run.jsonl"
    path.write_bytes(export(admin_api))
    result = run_manage("mcp_evidence", "verify", "--file", str(path), "other-run")
    assert result.returncode == 1 and f"holds run {RUN!r}, not 'other-run'" in result.stderr


def test_the_command_still_checks_the_whole_chain_in_the_database():
    write_chain(RUN, 40)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET tool = 'x' WHERE run_id = %s AND seq = 2", [RUN])
    # The command runs in its own process: it sees only committed rows, so ask in-process.
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="chain BROKEN at seq 2"):
        call_command("mcp_evidence", "verify", RUN)
