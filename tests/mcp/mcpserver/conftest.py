"""Fixtures of the MCP endpoint's tests: one real web door (two workers, as deployed) for the
module's tests that drive it with clients nobody here wrote, and runners for those clients (the
official SDK's, in a subprocess outside the project root; Node tools from an npm cache folder
outside the repository)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.processes import WebServer, project_env

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def web_door(django_db_setup, django_db_blocker):
    """`python -m maestro.web` with two workers on the test database: a client's requests land on
    either worker, so sessions and streams must work across them."""
    with django_db_blocker.unblock():
        env = project_env(WEB_CONCURRENCY="2")
    with WebServer(env) as web:
        yield web


def mcp_url(web, run_id: str) -> str:
    return f"{web.base_url}/api/maestro/v1/runs/{run_id}/mcp"


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}


class Lines:
    """A subprocess whose stdout is read line by line, each read bounded in time."""

    def __init__(self, cmd: list[str], *, env: dict | None = None):
        self.workdir = tempfile.mkdtemp(prefix="mcp-client-")
        self.process = subprocess.Popen(
            cmd, cwd=self.workdir, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)

    def line(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.selector.select(timeout=max(0.0, deadline - time.monotonic())):
                text = self.process.stdout.readline()
                if not text:
                    break
                return json.loads(text)
        self.process.kill()
        raise AssertionError(f"no line from the client within {timeout} s; stderr:\n{self.process.stderr.read()[-6000:]}")

    def finish(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def sdk_client(**options: str) -> Lines:
    args = [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", value)]
    return Lines([sys.executable, "-P", str(HERE / "sdk_client.py"), *args])
