from __future__ import annotations

import pytest

from tests.conftest import make_key


# Sessions are written by the data plane's own connections (maestro.adb), outside any test
# transaction: these tests run on a transactional database.


@pytest.fixture(params=[False, True], ids=["redis-only", "persisted"])
def persist(request, transactional_db, settings) -> bool:
    """Runs a test once with sessions in Redis only and once persisted in PostgreSQL."""
    settings.MCP_SESSIONS_PERSIST = request.param
    return request.param


@pytest.fixture
def persisted(transactional_db, settings) -> bool:
    settings.MCP_SESSIONS_PERSIST = True
    return True


@pytest.fixture
def ops(gateway):
    """The web door as deployed, with an operator key holding scope mcp:sessions (POST .../sessions
    is the data plane's, the rest Django's)."""
    gateway.credentials(x_api_key=make_key(["mcp:sessions"]))
    return gateway


@pytest.fixture(params=["redis", "embedded"])
def either_store(request, settings, tmp_path):
    """Runs a test once on Redis (the suite's default) and once on the embedded file cache."""
    from sessions_app.store import CacheStore, RedisStore, get_store
    from tests.sessions_app.helpers import flush_cache

    if request.param == "embedded":
        settings.REDIS_URL = None
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path / "cache")}}
    assert isinstance(get_store(), RedisStore if request.param == "redis" else CacheStore), "the suite runs with Redis"
    yield request.param
    flush_cache()
