"""Misconfiguration stops every entry point with one line naming the variable."""

import pytest

from tests.support.processes import PYTHON, ROOT, project_env, run_manage
import subprocess


def assert_one_line_config_error(result, *must_mention: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    for text in must_mention:
        assert text in lines[0]


def test_missing_session_secret_stops_manage_py_with_a_hint():
    result = run_manage("check", env=project_env(SESSION_SECRET=None))
    assert_one_line_config_error(result, "SESSION_SECRET", "secrets.token_urlsafe")


def test_short_session_secret_is_refused():
    result = run_manage("check", env=project_env(SESSION_SECRET="too-short"))
    assert_one_line_config_error(result, "SESSION_SECRET", "at least 32")


def test_missing_secret_stops_celery():
    result = subprocess.run(
        [PYTHON, "-c", "import maestro.celery"], cwd=ROOT, env=project_env(SESSION_SECRET=None), capture_output=True, text=True, timeout=60
    )
    assert_one_line_config_error(result, "SESSION_SECRET")


def test_missing_secret_stops_the_web_server_before_any_worker_starts():
    result = subprocess.run(
        [PYTHON, "-m", "maestro.web"], cwd=ROOT, env=project_env(SESSION_SECRET=None), capture_output=True, text=True, timeout=60,
    )
    assert_one_line_config_error(result, "SESSION_SECRET")
    assert "granian" not in result.stderr.lower()  # stopped before the server (and its workers) started


def test_a_bad_bind_address_stops_the_web_server():
    result = subprocess.run(
        [PYTHON, "-m", "maestro.web"], cwd=ROOT, env=project_env(MAESTRO_HTTP_BIND="8000"), capture_output=True, text=True, timeout=60,
    )
    assert_one_line_config_error(result, "MAESTRO_HTTP_BIND")


def test_a_metrics_folder_the_web_door_cannot_create_stops_it_before_its_workers():
    result = subprocess.run(
        [PYTHON, "-m", "maestro.web"], cwd=ROOT, env=project_env(MAESTRO_METRICS_DIR="/proc/maestro-metrics"),
        capture_output=True, text=True, timeout=60,
    )
    assert_one_line_config_error(result, "MAESTRO_METRICS_DIR", "cannot prepare /proc/maestro-metrics/web")


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("MCP_SESSIONS_PERSIST", "maybe", "use true or false"),
        ("SESSION_TTL_SECONDS", "-5", "between 1 and"),
        ("SESSION_TTL_SECONDS", "soon", "not an integer"),
        ("DATABASE_URL", "mysql://u:hunter2@db/x", "expected"),
        ("DATABASE_URL", "postgresql://u:hunter2@db:5432/", "names no database"),
        ("REDIS_URL", "http://cache", "redis://"),
        ("CORS_ORIGIN", "studio.example.com", "CORS_ORIGIN"),
        ("MCP_GRPC_TLS_CERT", "/nonexistent/cert.pem", "MCP_GRPC_TLS_CERT"),
        ("OPA_URL", "opa:8181", "OPA_URL"),
        ("DATABASE_POOL_SIZE", "lots", "not an integer"),
        ("MCP_GRPC_BIND", "127.0.0.1", "HOST:PORT"),
        ("MCP_GRPC_METRICS_BIND", "127.0.0.1:metrics", "HOST:PORT"),
        ("MAESTRO_HTTP_THREADS", "0", "between 1 and"),
        ("MAESTRO_METRICS_DIR", str(ROOT / "manage.py"), "is not a directory"),
        ("MCP_EVIDENCE_VERIFY_INTERVAL_SECONDS", "1", "between 5 and"),
        ("MCP_UPSTREAM_ALLOW_PRIVATE", "loopback", "use true or false"),
        ("MCP_UPSTREAM_ALLOWED_CIDRS", "10.0.0.0/8,10.1.2.3/8", "host bits zero"),
        ("MCP_UPSTREAM_ALLOWED_CIDRS", "localhost", "10.0.0.0/8"),
        ("MCP_MAX_JSON_DEPTH", "1000", "between 4 and"),
    ],
)
def test_bad_values_name_the_variable_and_the_form(variable, value, expected):
    result = run_manage("check", env=project_env(**{variable: value}))
    assert_one_line_config_error(result, variable, expected)
    assert "hunter2" not in result.stderr, "a password from a URL must never be printed"


@pytest.mark.parametrize("variable", ["WEB_CONCURRENCY", "MCP_GRPC_WORKERS"])
def test_several_workers_need_redis(variable):
    result = run_manage("check", env=project_env(**{variable: "2", "REDIS_URL": None}))
    assert_one_line_config_error(result, variable, "REDIS_URL")


def test_conn_max_age_with_the_pool_is_refused():
    result = run_manage("check", env=project_env(DATABASE_CONN_MAX_AGE="60"))
    assert_one_line_config_error(result, "DATABASE_CONN_MAX_AGE", "DATABASE_POOL_SIZE=0")


def test_good_configuration_passes_the_check():
    result = run_manage("check")
    assert result.returncode == 0, result.stderr


def test_the_embedded_broker_keeps_all_its_files_in_the_data_folder(tmp_path):
    # kombu's filesystem transport writes an exchange table into ./control unless told otherwise
    code = "from django.conf import settings; import json; print(json.dumps(settings.CELERY_BROKER_TRANSPORT_OPTIONS))"
    result = run_manage("shell", "-c", code, env=project_env(REDIS_URL=None, CELERY_BROKER_URL=None, MAESTRO_DATA_DIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    folders = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert {"data_folder_in", "data_folder_out", "data_folder_processed", "control_folder"} <= set(folders)
    assert all(path.startswith(str(tmp_path)) for path in folders.values())
