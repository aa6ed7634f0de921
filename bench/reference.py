"""`make bench --compare-ref REV`: another version of the gateway (by default stage 1, the threaded
data plane) measured in the same run as this one, on the same upstream, PostgreSQL and Redis:
the comparison issue 10 asked for before converting ("the async invoke path beside today's, in
one run"), kept so the step can be re-measured.

The version is checked out with `git worktree` into a temporary folder (no file of it is kept),
runs on this checkout's virtualenv against a database and a Redis db of its own, and is driven
with the same wrk requests at concurrency 1 and 32, its web door's CPU read from /proc.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from bench import procstat
from bench.stack import API, PYTHON, ROOT, Service, procfile
from bench.wrk import run_wrk
from tests.support.services import free_port

STAGE1 = "7ea0146"  # the last commit of the threaded data plane (granian WSGI, threads)


class Reference:
    def __init__(self, stack, ref: str):
        self.stack = stack
        self.ref = ref
        self.folder = Path(tempfile.mkdtemp(prefix="maestro-ref-"))
        self.port = free_port()
        self.web: Service | None = None

    def start(self) -> None:
        subprocess.run(["git", "worktree", "add", "--detach", str(self.folder / "tree"), self.ref], cwd=ROOT, check=True, capture_output=True)
        tree = self.folder / "tree"
        (tree / ".venv").symlink_to((ROOT / ".venv").resolve())
        base = self.stack.postgres.url.rsplit("/", 1)[0]
        subprocess.run([PYTHON, "-c", f"import psycopg; c = psycopg.connect({base + '/maestro'!r}, autocommit=True); c.execute('CREATE DATABASE maestro_ref')"],
                       check=True, capture_output=True)
        self.env = {
            **self.stack.env, "DATABASE_URL": base + "/maestro_ref", "REDIS_URL": self.stack.redis.url.rsplit("/", 1)[0] + "/1",
            "MAESTRO_HTTP_BIND": f"127.0.0.1:{self.port}", "MAESTRO_DATA_DIR": str(self.folder / "data"),
        }
        for step in (["migrate", "--noinput", "-v0"], ["mcp_apikey", "create", "--name", "bench", "--scopes", "admin:mcp"]):
            done = subprocess.run([PYTHON, "manage.py", *step], cwd=tree, env=self.env, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"reference {self.ref}: manage.py {step[0]} failed: {done.stderr[-1500:]}")
        key = done.stdout.strip().splitlines()[-1].strip()
        command = procfile()["web"]
        self.web = Service("web-ref", command, self.env, self.stack.logdir, cwd=tree)
        self._wait_ready()
        url = f"http://127.0.0.1:{self.port}{API}"
        answer = httpx.post(f"{url}/mcp/servers", headers={"X-API-Key": key}, json={"name": self.stack.server_name, "url": self.stack.upstream.url()}, timeout=30)
        if answer.status_code != 201:
            raise RuntimeError(f"reference {self.ref}: registering the upstream: {answer.status_code} {answer.text[:300]}")
        answer = httpx.post(f"{url}/runs/bench-ref/mcp/sessions", headers={"X-API-Key": key}, json=self.stack.session_body(), timeout=30)
        self.token = answer.json()["token"]
        self.invoke_url = f"{url}/runs/bench-ref/mcp/invoke"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"reference {self.ref}: the web door was not ready:\n{self.web.log_tail()}")

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(self.folder / "tree")], cwd=ROOT, capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def compare_scenario(ctx, *, ref: str, body: str, points=(1, 32)) -> dict:
    """The same invoke through this gateway and through `ref`, each at `points`, one after the other."""
    stack = ctx.stack
    reference = Reference(stack, ref)
    try:
        reference.start()
        doors = {
            "current": (stack.url(f"{API}/runs/bench-http/mcp/invoke"), ctx.token("bench-http"), stack.web.pids),
            ref: (reference.invoke_url, reference.token, reference.web.pids),
        }
        rows = []
        for concurrency in points:
            row = {"concurrency": concurrency}
            for name, (url, token, pids) in doors.items():
                headers = {"Authorization": f"Bearer {token}"}
                warm = run_wrk(url, body=body, headers=headers, connections=8, duration=ctx.warmup)
                if name == "current":
                    ctx.saw("bench-http", warm["ok"], 8)
                meter = procstat.CpuMeter({"web": pids})
                before = meter.snapshot()
                result = run_wrk(url, body=body, headers=headers, connections=concurrency, duration=ctx.duration)
                used = meter.delta(before)["web"]
                row[name] = {"rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "errors": result["errors"],
                             "web_cpu_ms_per_call": round(used * 1000 / max(result["requests"], 1), 3)}
                if name == "current":
                    ctx.saw("bench-http", result["ok"], concurrency)
            rows.append(row)
        return {"ref": ref, "rows": rows}
    finally:
        reference.stop()
