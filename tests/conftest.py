"""Shared fixtures: an API client with domain helpers, operator keys, and URL reloading for the
kill switch. PostgreSQL and Redis come from tests.support.plugin."""

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

# Property tests: bounded (the suite's time budget) and, in CI, derandomized (a failure there is
# reproducible; locally every run explores new examples). Function-scoped fixtures are fine here:
# the property tests give every example its own run id, so examples never see each other's rows.
hypothesis_settings.register_profile(
    "maestro", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("maestro"), derandomize=True, database=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "maestro")


def _clear_caches() -> None:
    from mcp.services import evidence, registry

    cache.clear()
    registry.local_cache_clear()
    evidence.local_cache_clear()


@pytest.fixture(autouse=True)
def _clean_cache():
    # Tests roll the database back behind the in-process caches' backs: start each one clean.
    _clear_caches()
    yield
    _clear_caches()


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
