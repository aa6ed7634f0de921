"""One scrape of a door sums all its worker processes (prometheus_client's multiprocess mode), and
the sum survives workers being replaced: the web door with two real granian workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import make_key
from tests.support.metrics import scrape
from tests.support.processes import PYTHON, ROOT, WebServer, project_env
from tests.support.services import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def workers_of(web: WebServer) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(web.process.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def answers(web: WebServer) -> bool:
    try:
        return web.get("/api/health").status_code == 200
    except httpx.TransportError:
        return False  # a replaced worker not listening yet


def create_sessions(web: WebServer, key: str, count: int) -> None:
    """`count` sessions through the API (answered by the data plane) and as many revocations of
    the run (answered by Django: django-prometheus counts those), 8 at a time, each on its own
    connection (so the kernel spreads them over the workers)."""
    url = f"{web.base_url}/api/maestro/v1/runs/run-metrics/mcp/sessions"
    headers = {"X-API-Key": key, "Connection": "close"}

    def create(n: int) -> int:
        return httpx.post(url, json={"scopes": ["mcp:invoke"]}, headers=headers, timeout=10).status_code

    def revoke_run(n: int) -> int:
        return httpx.delete(url, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, range(count))) == [201] * count
        assert list(pool.map(revoke_run, range(count))) == [204] * count


def test_one_scrape_sums_both_web_workers_and_keeps_counting_after_they_are_replaced():
    key = make_key(["admin:mcp"])
    # Given the web door with two worker processes (REDIS_URL is set by the test session)
    with WebServer(project_env(WEB_CONCURRENCY="2", MAESTRO_HTTP_THREADS="8")) as web:
        first = wait_until(lambda: len(workers_of(web)) == 2 and workers_of(web), timeout=20)
        assert first, web.output()
        # When 24 sessions are created through the API
        create_sessions(web, key, 24)
        # Then one scrape counts all 24, ours and django-prometheus's, whichever worker served them
        page = scrape(f"{web.base_url}/metrics")
        assert page.value("mcp_sessions_total", event="created") == 24
        assert page.value("django_http_responses_total_by_status_total", status="204") == 24
        assert page.value("maestro_door_processes") == 3  # granian's main process and two workers
        assert page.value("process_resident_memory_bytes") > 0 and page.value("process_cpu_seconds_total") > 0

        # When both workers die (SIGKILL: no goodbye) and granian replaces them
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        replaced = wait_until(lambda: len(workers_of(web)) == 2 and not workers_of(web) & first and workers_of(web), timeout=30)
        assert replaced, web.output()
        assert wait_until(lambda: answers(web), timeout=20)
        # And 6 more sessions are created by the new workers
        create_sessions(web, key, 6)
        # Then the counters still include what the dead workers counted
        page = scrape(f"{web.base_url}/metrics")
        assert page.value("mcp_sessions_total", event="created") == 30
        assert page.value("django_http_responses_total_by_status_total", status="204") == 30
        assert page.value("maestro_door_processes") == 3


def test_the_door_empties_its_metrics_folder_when_it_starts(tmp_path):
    # Given a metrics folder holding a previous run's counter file
    stale = tmp_path / "web"
    stale.mkdir()
    (stale / "counter_999999.db").write_bytes(b"stale")
    # When the web door starts with it
    with WebServer(project_env(WEB_CONCURRENCY="1", MAESTRO_METRICS_DIR=str(tmp_path))) as web:
        assert web.get("/metrics").status_code == 200
        # Then the stale file is gone (it would have been summed in) and the door's files are there
        files = {path.name for path in stale.iterdir()}
    assert "counter_999999.db" not in files
    assert "door.json" in files and any(name.startswith("counter_") for name in files)


def test_a_dead_workers_live_gauges_leave_the_sum_and_its_counters_stay(tmp_path):
    # Given a door whose two workers each counted 5 calls and hold one call in flight
    result = subprocess.run(
        [PYTHON, "-m", "tests.support.door_probe"], cwd=ROOT, env=project_env(MAESTRO_METRICS_DIR=str(tmp_path)),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sums = json.loads(result.stdout)
    assert sums["before"] == {"probe_calls_total": 10.0, "probe_busy": 2.0}
    # When one worker is killed, then the next scrape drops its in-flight call but keeps its calls
    assert sums["after"] == {"probe_calls_total": 10.0, "probe_busy": 1.0}
