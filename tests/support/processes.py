"""Start the project's own entry points as real processes for tests (the web server, manage.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.services import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def test_database_url() -> str:
    """DATABASE_URL of pytest-django's test database, so a subprocess sees the test's rows
    (tests that share rows with a subprocess must use django_db(transaction=True))."""
    from django.db import connection

    base = os.environ["DATABASE_URL"]
    return base.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]


def project_env(**overrides: str | None) -> dict[str, str]:
    """The test session's environment plus overrides; None removes a variable."""
    env = dict(os.environ)
    env["DJANGO_DOTENV_FILE"] = ""
    env["DATABASE_URL"] = test_database_url()
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_manage(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env or project_env(), capture_output=True, text=True, timeout=timeout)


class WebServer:
    """The web door exactly as deployed: the Procfile's `python -m maestro.web` (granian)."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        # A metrics folder of its own: a door empties its folder when it starts, and tests may run
        # two web doors at once.
        self.metrics_dir = tempfile.mkdtemp(prefix="maestro-metrics-")
        self.env = {"MAESTRO_METRICS_DIR": self.metrics_dir, **env, "MAESTRO_HTTP_BIND": f"127.0.0.1:{self.port}"}
        self.process: subprocess.Popen | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "WebServer":
        # A file, not a pipe: nobody reads a pipe while the test runs, and a full one would
        # block the server's logging (and so the server).
        self.log_file = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "maestro.web"], cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=30)
        return self

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=10, **kwargs)

    def output(self) -> str:
        """What the server has logged so far (for assertions and failure messages)."""
        self.log_file.flush()
        self.log_file.seek(0)
        return self.log_file.read()

    def __exit__(self, *exc) -> None:
        stop_process(self.process, group=True)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def timed(fn):
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started
