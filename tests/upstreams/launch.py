"""Start and stop the upstream MCP servers the tests talk to, as subprocesses on free loopback ports.

SDK servers run with `python -P` from a temporary working directory and without PYTHONPATH, so
`import mcp` in them is the official SDK, not this project's app. server-everything is installed
from npm on first use into a cache folder outside the repository and pinned to 127.0.0.1 with a
`node --import` preload. Stopping is SIGTERM, a short wait, then SIGKILL: a stateful server may
ignore SIGTERM while sessions are open (DESIGN section 9).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.services import free_port, wait_for_port

HERE = Path(__file__).resolve().parent
EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything@2026.8.31"
NPM_DIR = Path(os.environ.get("MAESTRO_TEST_NPM_DIR") or Path.home() / ".cache" / "maestro-mcp-tests" / "npm")


@dataclass
class Upstream:
    name: str
    port: int
    process: subprocess.Popen
    log: Path
    scheme: str = "http"
    extra: dict = field(default_factory=dict)

    def url(self, path: str = "/mcp") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def stop(self, timeout: float = 3.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def stop_all(upstreams: list[Upstream], timeout: float = 3.0) -> None:
    """SIGTERM them all at once, give them `timeout` together, then SIGKILL the rest."""
    for upstream in upstreams:
        if upstream.process.poll() is None:
            upstream.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for upstream in upstreams:
        try:
            upstream.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            upstream.process.kill()
            upstream.process.wait(timeout=timeout)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(name: str, cmd: list[str], *, port: int, env: dict | None = None) -> Upstream:
    workdir = Path(tempfile.mkdtemp(prefix=f"upstream-{name}-"))
    log = workdir / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=workdir, env=env or _env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Upstream(name=name, port=port, process=process, log=log)


def start_sdk(name: str, *args: str, port: int | None = None) -> Upstream:
    """An SDK server (tests/upstreams/sdk_server.py) with the given options; not yet waited for.
    `port`: a given one (a server restarted where the gateway already knows it), else a free one."""
    port = port or free_port()
    return _spawn(name, [sys.executable, "-P", str(HERE / "sdk_server.py"), "--port", str(port), "--name", name, *args], port=port)


def start_faulty(*, huge_bytes: int, slow_seconds: float) -> Upstream:
    port, tls_port = free_port(), free_port()
    cmd = [
        sys.executable, "-P", str(HERE / "faulty_server.py"), "--port", str(port), "--tls-port", str(tls_port),
        "--huge-bytes", str(huge_bytes), "--slow-seconds", str(slow_seconds),
    ]
    upstream = _spawn("faulty", cmd, port=port)
    upstream.extra["tls_port"] = tls_port
    return upstream


def everything_entry() -> Path:
    """server-everything's entry point, installed from npm into NPM_DIR if it is not there yet."""
    entry = NPM_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    if entry.exists():
        return entry
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: it is needed to fetch @modelcontextprotocol/server-everything")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund", "--loglevel=error", EVERYTHING_PACKAGE],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0 or not entry.exists():
        raise RuntimeError(f"npm install {EVERYTHING_PACKAGE} failed:\n{result.stderr[-2000:]}")
    return entry


def start_everything() -> Upstream:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: it is needed to run @modelcontextprotocol/server-everything")
    entry = everything_entry()
    port = free_port()
    env = {**_env(), "PORT": str(port)}
    cmd = [node, "--import", (HERE / "pin_loopback.mjs").as_uri(), str(entry), "streamableHttp"]
    return _spawn("everything", cmd, port=port, env=env)


def wait_ready(*upstreams: Upstream, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for upstream in upstreams:
        ports = [upstream.port] + ([upstream.extra["tls_port"]] if "tls_port" in upstream.extra else [])
        for port in ports:
            try:
                wait_for_port(port, timeout=max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                upstream.stop()
                raise RuntimeError(f"upstream {upstream.name} did not start:\n{upstream.log_tail()}") from None
        if upstream.process.poll() is not None:
            raise RuntimeError(f"upstream {upstream.name} exited:\n{upstream.log_tail()}")
