"""The MCP endpoint on the embedded default (no REDIS_URL: the file cache in the data folder, one
process): sessions live in that cache, list changes are delivered in the process."""

from __future__ import annotations

import asyncio

import pytest

from maestro import bridge
from mcp.mcpserver import streams
from mcp.services import changes
from tests.mcp.helpers import register
from tests.mcp.invoke_helpers import client, session_token  # noqa: F401
from tests.mcp.mcpserver.helpers import LegacySession, answer_of, mcp_path
from tests.sessions_app.helpers import flush_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def embedded_cache(settings, tmp_path):
    settings.REDIS_URL = None
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path / "cache")}}
    yield
    flush_cache()


def test_a_session_lives_in_the_embedded_cache(client, admin_api, sdk):
    register(admin_api, name="alpha", url=sdk.modern_json.url())
    session = LegacySession(client, session_token()).initialize()
    assert answer_of(session.request("tools/list"))["result"]["tools"][0]["name"] == "alpha__echo"
    assert client.delete(mcp_path(), headers=session.headers()).status_code == 204
    assert session.request("tools/list").status_code == 404


def test_a_list_change_reaches_this_process_without_redis(db):
    async def listen() -> set[str]:
        hub = streams.Hub()
        listener = streams.Listener(lists=frozenset({"tools", "prompts"}), servers=())
        hub.register(listener)
        await hub.subscribed.wait()
        # A registry write in a control-plane thread of this process
        await asyncio.to_thread(changes.list_changed_publish, server_id="s-1", lists=("tools", "resources"))
        await asyncio.wait_for(listener.wake.wait(), 5)
        await hub.stop()
        return listener.pending

    assert bridge.run(listen()) == {"tools"}
