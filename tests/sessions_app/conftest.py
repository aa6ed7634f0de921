from __future__ import annotations

import pytest

from tests.conftest import make_key


@pytest.fixture(params=[False, True], ids=["redis-only", "persisted"])
def persist(request, db, settings) -> bool:
    """Runs a test once with sessions in Redis only and once persisted in PostgreSQL."""
    settings.MCP_SESSIONS_PERSIST = request.param
    return request.param


@pytest.fixture
def persisted(db, settings) -> bool:
    settings.MCP_SESSIONS_PERSIST = True
    return True


@pytest.fixture
def ops(api, db):
    """An API client holding an operator key with scope mcp:sessions."""
    api.credentials(HTTP_X_API_KEY=make_key(["mcp:sessions"]))
    return api
