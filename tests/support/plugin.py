"""Loaded with `-p tests.support.plugin` (see pytest.ini) so it runs before pytest-django reads
settings: it starts the session's PostgreSQL and Redis and points DATABASE_URL/REDIS_URL at them.
"""

from __future__ import annotations

import os
import secrets

import pytest

from tests.support.services import PostgresServer, RedisServer

_started: list = []


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    os.environ["DJANGO_DOTENV_FILE"] = ""
    os.environ.setdefault("SESSION_SECRET", secrets.token_urlsafe(48))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "maestro.settings")
    os.environ.setdefault("MAESTRO_DATA_DIR", f"/tmp/maestro-test-data-{os.getpid()}")
    # Every upstream the suite starts listens on loopback, which the destination policy refuses by
    # default: allow loopback only (tests of the policy itself override it).
    os.environ.setdefault("MCP_UPSTREAM_ALLOWED_CIDRS", "127.0.0.0/8,::1/128")
    is_worker = "PYTEST_XDIST_WORKER" in os.environ
    if not is_worker and "DATABASE_URL" not in os.environ:
        postgres = PostgresServer().start()
        _started.append(postgres)
        redis = RedisServer().start()
        _started.append(redis)
        os.environ["DATABASE_URL"] = postgres.url
        os.environ["REDIS_URL"] = redis.url
        early_config.add_cleanup(_stop_all)
    return (yield)


def _stop_all() -> None:
    for server in reversed(_started):
        server.destroy()
    _started.clear()


def pytest_report_header(config):
    return [f"maestro: DATABASE_URL={os.environ.get('DATABASE_URL', 'sqlite (embedded)')} REDIS_URL={os.environ.get('REDIS_URL', 'in-process cache')}"]
