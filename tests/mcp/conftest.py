"""Upstream MCP servers for the registry and client tests: started once per test session, in
parallel, as real subprocesses on free loopback ports, and stopped at the end.

- `sdk`: five servers written with the official SDK, covering both protocol families, stateless
  and stateful, JSON and SSE answers; every one paginates tools/list (4 per page, 12 tools).
- `faulty` (tests/conftest.py): the unhappy upstreams (HTML, invalid JSON, oversized, slow, TLS).
- `everything`: @modelcontextprotocol/server-everything from npm, which nobody here wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mcp.services import registry
from tests.upstreams import launch

PAGE = ["--page-size", "4", "--extra-tools", "3"]
SDK_TOOL_COUNT = 12


@dataclass
class SdkServers:
    modern_json: launch.Upstream  # 2026-07-28, stateless, JSON
    modern_sse: launch.Upstream  # 2026-07-28 (it also speaks 2025), stateful, SSE
    legacy_sse: launch.Upstream  # 2025-11-25 only, sessions, SSE; refuses discover with 400
    legacy_json: launch.Upstream  # settles on 2025-06-18, sessions, JSON; refuses discover with 200 + -32601
    legacy_stateless: launch.Upstream  # settles on 2025-03-26, no sessions, JSON

    def all(self) -> list[launch.Upstream]:
        return [self.modern_json, self.modern_sse, self.legacy_sse, self.legacy_json, self.legacy_stateless]


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    # The database is rolled back between tests behind the registry's back: forget what it resolved.
    registry.local_cache_clear()
    yield
    registry.local_cache_clear()


@pytest.fixture(scope="session")
def sdk():
    servers = SdkServers(
        modern_json=launch.start_sdk("modern-json", "--mode", "stateless", "--response", "json", *PAGE),
        modern_sse=launch.start_sdk("modern-sse", "--mode", "stateful", "--response", "sse", *PAGE),
        legacy_sse=launch.start_sdk("legacy-sse", "--mode", "stateful", "--response", "sse", "--family", "legacy", *PAGE),
        legacy_json=launch.start_sdk(
            "legacy-json", "--mode", "stateful", "--response", "json", "--family", "legacy", "--legacy-reject", "200",
            "--legacy-version", "2025-06-18", *PAGE,
        ),
        legacy_stateless=launch.start_sdk(
            "legacy-stateless", "--mode", "stateless", "--response", "json", "--family", "legacy", "--legacy-version", "2025-03-26", *PAGE,
        ),
    )
    try:
        launch.wait_ready(*servers.all())
        yield servers
    finally:
        launch.stop_all(servers.all())


@pytest.fixture(scope="session")
def everything():
    try:
        server = launch.start_everything()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        launch.wait_ready(server, timeout=60)
        yield server
    finally:
        server.stop()
