"""Shared fixtures: an API client with domain helpers, operator keys, URL reloading for the kill
switch, and one upstream MCP server (the official SDK, in a subprocess) for the session.
PostgreSQL and Redis come from tests.support.plugin."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from django.core.cache import cache
from django.urls import clear_url_caches
from rest_framework.test import APIClient

from sessions_app.apikeys import apikey_create
from tests.upstreams import launch
from tests.upstreams.launch import start_sdk, wait_ready


FAULTY_HUGE_BYTES = 6 * 1024 * 1024  # over the default 4 MiB cap
FAULTY_SLOW_SECONDS = 20.0

# Property tests: bounded (the suite's time budget) and, in CI, derandomized (a failure there is
# reproducible; locally every run explores new examples). Function-scoped fixtures are fine here:
# the property tests give every example its own run id, so examples never see each other's rows.
hypothesis_settings.register_profile(
    "maestro", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("maestro"), derandomize=True, database=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "maestro")


def _clear_caches() -> None:
    from mcp.services import evidence_writer, registry

    cache.clear()
    registry.local_cache_clear()
    evidence_writer.local_cache_clear()


@pytest.fixture(scope="session", autouse=True)
def _data_plane_pools(django_db_setup, django_db_blocker):
    """The data plane's pools live on the bridge's loop for the whole session; they are closed
    before the test database is dropped (torn down first: this fixture needs django_db_setup)."""
    yield
    from tests.support.gateway import stop_data_plane

    with django_db_blocker.unblock():
        stop_data_plane()


@pytest.fixture
def gateway(transactional_db):
    """The web door in this process (data plane + Django): see tests/support/gateway.py."""
    from tests.support.gateway import GatewayClient

    return GatewayClient()


@pytest.fixture(autouse=True)
def _clean_cache():
    # Tests roll the database back behind the in-process caches' backs: start each one clean.
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture(scope="session")
def upstream():
    """One SDK upstream (stateless, JSON answers) for the whole session: tools echo, add, sleep
    (the slow tool), fail (an isError result), boom (a JSON-RPC error), ..."""
    server = start_sdk("session-upstream", "--mode", "stateless", "--response", "json")
    wait_ready(server)
    yield server
    server.stop()


@pytest.fixture
def api():
    return APIClient()


def make_key(scopes: list[str], name: str | None = None) -> str:
    import secrets

    _, key = apikey_create(name=name or f"k-{secrets.token_hex(4)}", scopes=scopes)
    return key


@pytest.fixture
def admin_key(db) -> str:
    return make_key(["admin:mcp"])


@pytest.fixture
def admin_api(api, admin_key):
    api.credentials(HTTP_X_API_KEY=admin_key)
    return api


def reload_urls() -> None:
    """Rebuild the URLconf after changing MAESTRO_MCP_ENABLED in a test."""
    clear_url_caches()
    for name in ["maestro.urls"]:
        if name in sys.modules:
            importlib.reload(sys.modules[name])


@pytest.fixture
def mcp_disabled(settings):
    """MAESTRO_MCP_ENABLED=false for one test, URLs rebuilt as a restart would."""
    settings.MAESTRO_MCP_ENABLED = False
    reload_urls()
    yield
    settings.MAESTRO_MCP_ENABLED = True
    reload_urls()


@pytest.fixture(scope="session")
def faulty():
    server = launch.start_faulty(huge_bytes=FAULTY_HUGE_BYTES, slow_seconds=FAULTY_SLOW_SECONDS)
    try:
        launch.wait_ready(server)
        yield server
    finally:
        server.stop()
