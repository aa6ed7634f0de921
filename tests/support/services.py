"""Real PostgreSQL and Redis servers for the test session, started from the installed binaries in
temporary folders on free loopback ports, and stopped at the end. Tests that need to stop a
dependency (readiness 503) start their own extra instance with the same classes.

`pg_ctl` refuses to run as root, so as root every PostgreSQL command runs through
`runuser -u postgres` in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen | None, timeout: float = 10, *, group: bool = False) -> None:
    """SIGTERM, `timeout` seconds to exit, then SIGKILL. With `group`, for a process started as the
    leader of its own group (`start_new_session=True`: the web door, whose master forks workers),
    the whole group goes with it: a master killed alone leaves its workers running, still following revocations
    and answering on the port (the fault tests then counted a stale gateway's workers)."""
    if process and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process and group:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the group is gone: every worker exited with its master


def wait_until(predicate, timeout: float, step: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (then its
    last answer is returned, for the assertion to show)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (or run `make test`, which does)")


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        # Not durable (the default): no fsync, commits acknowledged before they reach the WAL on
        # disk. Fast for tests, but an immediate stop then loses the last commits; tests that stop
        # the server under a running gateway need durable=True, as production has.
        self.durable = durable
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="maestro-pg-"))
        self.datadir = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else os.environ.get("USER", "postgres")

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)

    def start(self) -> "PostgresServer":
        if self.as_root:
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o700)
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "maestro", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._pg_ctl_start()
        wait_for_port(self.port)
        for _ in range(100):
            if self._run(str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0:
                break
            time.sleep(0.1)
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "maestro", "maestro")
        return self

    def _pg_ctl_start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    @property
    def url(self) -> str:
        return f"postgresql://maestro@127.0.0.1:{self.port}/maestro"

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop", check=False)

    def restart(self) -> None:
        self._pg_ctl_start()
        wait_for_port(self.port)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found: apt-get install redis-server (or run `make test`, which does)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="maestro-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        stop_process(self.process, timeout=5)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
