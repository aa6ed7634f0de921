"""Small helpers shared by the registry tests."""

from __future__ import annotations

import time
from contextlib import contextmanager

import httpx

from mcp.upstream.client import ServerSpec
from tests.upstreams.launch import Upstream

SERVERS = "/api/maestro/v1/mcp/servers"


def spec_for(upstream: Upstream | str, *, name: str = "upstream", timeout_ms: int = 5000, max_bytes: int = 4 * 1024 * 1024, headers: dict | None = None) -> ServerSpec:
    url = upstream if isinstance(upstream, str) else upstream.url()
    return ServerSpec(id=f"id-{name}", name=name, url=url, headers=headers or {}, timeout_ms=timeout_ms, max_response_bytes=max_bytes)


def stats(upstream: Upstream) -> dict[str, int]:
    """How many requests of each JSON-RPC method the SDK server has seen (see sdk_server.py)."""
    return httpx.get(upstream.url("/stats"), timeout=5).json()


@contextmanager
def counting(upstream: Upstream):
    """Yields a dict that, after the block, holds what the server saw during it."""
    before = stats(upstream)
    delta: dict[str, int] = {}
    yield delta
    after = stats(upstream)
    delta.update({k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)})


@contextmanager
def elapsed():
    """Yields a one-item list that holds the block's duration in seconds afterwards."""
    took = [0.0]
    started = time.monotonic()
    yield took
    took[0] = time.monotonic() - started


def register(api, *, name: str, url: str, **fields) -> dict:
    response = api.post(SERVERS, {"name": name, "url": url, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def text_of(result: dict) -> str:
    return "".join(block.get("text", "") for block in result.get("content", []) if block.get("type") == "text")


class SyncClient:
    """An UpstreamClient (asynchronous) driven from a test's thread: each coroutine method runs on
    the bridge's loop and is waited for. A fresh one has fresh process-local state, like a new
    worker's; the shared cache is the real one."""

    def __init__(self):
        from maestro import bridge
        from mcp.upstream.client import UpstreamClient

        async def make():
            return UpstreamClient()

        self.inner = bridge.run(make())

    def __getattr__(self, name: str):
        import inspect

        from maestro import bridge

        attribute = getattr(self.inner, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: bridge.run(attribute(*args, **kwargs))
        return attribute
