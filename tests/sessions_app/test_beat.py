"""The periodic cleanup as deployed: a real Celery worker with embedded beat (the Procfile's
`worker` line) on the test session's Redis broker and PostgreSQL removes expired sessions."""

from __future__ import annotations

from tests.sessions_app.helpers import authenticate, create  # noqa: F401

import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sessions_app.models import McpSession

from tests.support.processes import ROOT, project_env

pytestmark = pytest.mark.django_db(transaction=True)


def procfile_command(name: str) -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].split()
    raise AssertionError(f"no {name} line in the Procfile")


def test_beat_removes_expired_sessions_on_its_own(settings, tmp_path: Path):
    # Given two persisted sessions, one of which expired an hour ago
    settings.MCP_SESSIONS_PERSIST = True
    expired, _ = create(run_id="run-beat", scopes=["mcp:invoke"], ttl_seconds=600, created_by="test")
    live, _ = create(run_id="run-beat", scopes=["mcp:invoke"], ttl_seconds=600, created_by="test")
    McpSession.objects.filter(sid=expired.sid).update(expires_at=timezone.now() - timedelta(hours=1))

    # When the worker runs as deployed, with the cleanup every 5 seconds
    command = [str(ROOT / part) if part.startswith(".venv/") else part for part in procfile_command("worker")]
    env = project_env(MCP_SESSIONS_PERSIST="true", MCP_SESSION_CLEANUP_INTERVAL_SECONDS="5", MAESTRO_DATA_DIR=str(tmp_path))
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 45
        while McpSession.objects.filter(sid=expired.sid).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        gone = not McpSession.objects.filter(sid=expired.sid).exists()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output = worker.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            worker.kill()
            output = worker.communicate()[0]

    # Then the expired one is gone, the live one stays, and the log shows the task ran
    assert gone, output[-3000:]
    assert McpSession.objects.filter(sid=live.sid).exists()
    assert "cleanup_expired_sessions" in output
