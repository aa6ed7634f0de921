"""Everything the benchmark runs against, started on loopback and stopped again, whatever happens.

PostgreSQL, Redis and the SDK upstream come from the test-support helpers; the gateway's `web` and
`grpc` processes are the `Procfile` lines, run as an operator would (README: "Running against
PostgreSQL and Redis"), each in its own process group so that stopping it also stops what it forked.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import httpx

from bench import procstat
from tests.support.services import PostgresServer, RedisServer, free_port, wait_for_port
from tests.upstreams.launch import Upstream, start_sdk, wait_ready

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
API = "/api/maestro/v1"


class BenchPostgres(PostgresServer):
    """The test-support server with room for one connection per in-flight call, which a gateway
    run without its connection pool (DATABASE_POOL_SIZE=0) would need (the test default is 300)."""

    def __init__(self, max_connections: int) -> None:
        # Durable, as in production (fsync and synchronous commit on): the test default trades
        # durability for speed, which would flatter the evidence write.
        super().__init__(durable=True)
        self.max_connections = max_connections

    def _pg_ctl_start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections={self.max_connections}"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def postmaster_pid(self) -> int:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def pids(self) -> list[int]:
        return procstat.tree([self.postmaster_pid()])


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


class Service:
    """A Procfile command in its own session (process group); its output goes to a log file."""

    def __init__(self, name: str, command: str, env: dict[str, str], logdir: Path, cwd: Path = ROOT):
        self.name = name
        self.command = command
        self.log = logdir / f"{name}.log"
        # `exec` so the pid is the server itself (granian's main process), as under honcho's shell.
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def pids(self) -> list[int]:
        return procstat.tree([self.process.pid]) if self.process.poll() is None else []

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            stragglers = self.pids()
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
            # A worker that left the group (or was orphaned) is still ours: kill it by pid.
            for pid in stragglers:
                _kill_pid(pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Stack:
    """Owns every process the run starts; `close()` stops them all, in reverse order."""

    def __init__(self, *, pg_max_connections: int, logdir: Path | None = None):
        self.logdir = logdir or Path(tempfile.mkdtemp(prefix="maestro-bench-"))
        self.pg_max_connections = pg_max_connections
        self.postgres: BenchPostgres | None = None
        self.redis: RedisServer | None = None
        self.upstream: Upstream | None = None
        self.web: Service | None = None
        self.grpc: Service | None = None
        self.env: dict[str, str] = {}
        self.http_port = 0
        self.grpc_port = 0
        self.api_key = ""
        self.server_name = "bench-upstream"

    # --- start ------------------------------------------------------------------------------

    def start_dependencies(self) -> None:
        self.postgres = BenchPostgres(self.pg_max_connections)
        self.postgres.start()
        self.redis = RedisServer()
        self.redis.start()
        self.start_upstream()

    def start_upstream(self, port: int | None = None) -> None:
        """The SDK upstream (stateless, JSON); on `port` when it is started again where the gateway
        already knows it (the soak kills it and starts it again)."""
        # A deep listen backlog: the crowd scenario sends the upstream 10,000 connections at once.
        self.upstream = start_sdk("bench-upstream", "--mode", "stateless", "--response", "json", "--backlog", "8192", port=port)
        wait_ready(self.upstream)

    def base_env(self) -> dict[str, str]:
        """The production settings the README documents, nothing tuned beyond them."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAESTRO_", "MCP_", "DJANGO_", "SESSION_", "WEB_CONCURRENCY", "OTEL_"))}
        env.pop("PYTHONPATH", None)
        self.http_port, self.grpc_port = free_port(), free_port()
        env.update({
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "MCP_SESSIONS_PERSIST": "true",
            "SESSION_SECRET": secrets.token_urlsafe(48),
            # No local .env: the run must not depend on (or leak) a developer's settings.
            "DJANGO_DOTENV_FILE": "",
            "MAESTRO_DATA_DIR": str(self.logdir / "data"),
            "MAESTRO_HTTP_BIND": f"127.0.0.1:{self.http_port}",
            "MCP_GRPC_BIND": f"127.0.0.1:{self.grpc_port}",
            # The upstream is on loopback, which the destination policy refuses unless allowed.
            "MCP_UPSTREAM_ALLOWED_CIDRS": "127.0.0.0/8,::1/128",
            # One session carries a whole burst (up to 10,000 calls); the default limit (32) would 429 it.
            "MCP_SESSION_MAX_IN_FLIGHT": "20000",
        })
        return env

    def migrate_and_key(self) -> None:
        self._manage("migrate", "--noinput", "-v0")
        out = self._manage("mcp_apikey", "create", "--name", "bench", "--scopes", "admin:mcp")
        self.api_key = out.strip().splitlines()[-1].strip()
        if not self.api_key.startswith("mcpk_"):
            raise RuntimeError(f"mcp_apikey create printed no key: {out!r}")

    def _manage(self, *args: str) -> str:
        proc = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def effective_settings(self, env: dict[str, str]) -> dict:
        """What the gateway's settings module makes of this environment (the documented defaults
        included), read the way the processes read it."""
        code = (
            "import json; from maestro import settings as s; "
            "names = ['HTTP_WORKERS', 'HTTP_THREADS', 'HTTP_MAX_CONCURRENCY', 'MCP_GRPC_MAX_IN_FLIGHT', 'MCP_SESSION_MAX_IN_FLIGHT', "
            "'MCP_UPSTREAM_MAX_CONNECTIONS', 'MCP_SESSIONS_PERSIST', 'LOG_REQUESTS', 'LOG_LEVEL']; "
            "out = {n: getattr(s, n, None) for n in names}; "
            "out['DATABASE_CONN_MAX_AGE'] = s.DATABASES['default'].get('CONN_MAX_AGE'); print(json.dumps(out, default=str))"
        )
        proc = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-300:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def start_gateway(self, overlay: dict[str, str] | None = None, *, grpc: bool = True) -> dict[str, str]:
        env = {**self.env, **(overlay or {})}
        commands = procfile()
        for needed in ("web", "grpc"):
            if needed not in commands:
                raise RuntimeError(f"Procfile has no {needed}: line")
        self.web = Service("web", commands["web"], env, self.logdir)
        if grpc:
            self.grpc = Service("grpc", commands["grpc"], env, self.logdir)
        self._wait_http_ready()
        if grpc:
            try:
                wait_for_port(self.grpc_port, timeout=30)
            except TimeoutError:
                raise RuntimeError(f"the grpc process did not listen:\n{self.grpc.log_tail()}") from None
        return commands

    def restart_gateway(self, overlay: dict[str, str]) -> None:
        for service in (self.web, self.grpc):
            if service:
                service.stop()
        self.start_gateway(overlay)

    def _wait_http_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.web.process.poll() is not None:
                raise RuntimeError(f"the web process exited ({self.web.process.returncode}):\n{self.web.log_tail()}")
            try:
                answer = httpx.get(self.url("/api/ready"), timeout=2)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(f"the web process was not ready after {timeout}s ({last}):\n{self.web.log_tail()}")

    # --- the API, as an operator uses it ---------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def register_upstream(self) -> None:
        answer = httpx.post(self.url(f"{API}/mcp/servers"), headers={"X-API-Key": self.api_key},
                            json={"name": self.server_name, "url": self.upstream.url()}, timeout=30)
        if answer.status_code != 201:
            raise RuntimeError(f"registering the upstream: {answer.status_code} {answer.text[:500]}")

    def set_server_timeout(self, timeout_ms: int) -> None:
        answer = httpx.patch(self.url(f"{API}/mcp/servers/{self.server_name}"), headers={"X-API-Key": self.api_key},
                             json={"timeout_ms": timeout_ms}, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"setting the upstream's timeout: {answer.status_code} {answer.text[:500]}")

    def open_session(self, run_id: str) -> str:
        answer = httpx.post(self.url(f"{API}/runs/{run_id}/mcp/sessions"), headers={"X-API-Key": self.api_key},
                            json=self.session_body(), timeout=30)
        if answer.status_code != 201:
            raise RuntimeError(f"opening a session: {answer.status_code} {answer.text[:500]}")
        return answer.json()["token"]

    def session_body(self) -> dict:
        return {"scopes": ["mcp:invoke"], "servers": [self.server_name], "ttl_seconds": 3600}

    def evidence_counts(self) -> dict[str, dict[str, int]]:
        import psycopg

        with psycopg.connect(self.postgres.url, connect_timeout=10) as conn:
            rows = conn.execute("SELECT run_id, status, count(*) FROM mcp_invocations GROUP BY 1, 2").fetchall()
        counts: dict[str, dict[str, int]] = {}
        for run_id, status, n in rows:
            counts.setdefault(run_id, {})[status] = n
        return counts

    def session_rows(self) -> int:
        import psycopg

        with psycopg.connect(self.postgres.url, connect_timeout=10) as conn:
            return conn.execute("SELECT count(*) FROM mcp_sessions").fetchone()[0]

    # --- stop -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops everything; each step on its own, so one failure does not leave the rest running."""
        steps = [
            ("grpc", lambda: self.grpc and self.grpc.stop()),
            ("web", lambda: self.web and self.web.stop()),
            ("upstream", self._stop_upstream),
            ("redis", lambda: self.redis and self.redis.destroy()),
            ("postgres", self._stop_postgres),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"bench: stopping {name} failed: {exc!r}", file=sys.stderr)

    def run(self, work, label: str = "bench") -> int:
        """`work()`, then stop everything, whatever happened: 0 when it completed, 130 on Ctrl-C,
        1 when it broke (the traceback and the gateway's log tails are printed)."""
        status = 0
        try:
            work()
        except KeyboardInterrupt:
            print(f"{label}: interrupted; stopping everything", file=sys.stderr)
            status = 130
        except Exception:  # noqa: BLE001 - report, then stop everything
            traceback.print_exc()
            for service in (self.web, self.grpc):
                if service is not None:
                    print(f"--- {service.name} log tail ---\n{service.log_tail()}", file=sys.stderr)
            status = 1
        finally:
            # A second Ctrl-C must not cut the clean-up short.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.close()
            signal.signal(signal.SIGINT, previous)
        return status

    def publish(self, text: str, results: dict, output: str) -> None:
        """Print the report and write the results JSON to `output` (make bench and make soak)."""
        print(text)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwritten: {os.path.relpath(output, ROOT)}")

    def tidy_logs(self, status: int, *, keep: bool, label: str) -> None:
        """Remove the gateway's logs after a clean run; keep them (and say where) otherwise."""
        if status == 0 and not keep:
            shutil.rmtree(self.logdir, ignore_errors=True)
        else:
            print(f"{label}: gateway logs kept in {self.logdir}", file=sys.stderr)

    def _stop_upstream(self) -> None:
        if self.upstream:
            self.upstream.stop()
            shutil.rmtree(self.upstream.log.parent, ignore_errors=True)

    def _stop_postgres(self) -> None:
        if not self.postgres:
            return
        pids = self.postgres.pids()
        self.postgres.destroy()
        for pid in pids:
            _kill_pid(pid)
