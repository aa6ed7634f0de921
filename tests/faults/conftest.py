"""Fault scenarios against real processes: one PostgreSQL (durable) and one Redis of the package's
own, which scenarios stop and start, and gateways started from the Procfile's web line on them.
Processes are shared where a scenario does not need its own settings, to keep restarts few."""

from __future__ import annotations

import pytest

from tests.faults.support import Gateway, Stack
from tests.support.services import PostgresServer, RedisServer
from tests.upstreams import launch


@pytest.fixture(scope="package")
def stack():
    postgres, redis = PostgresServer(durable=True), RedisServer()
    try:
        postgres.start()
        redis.start()
        yield Stack(postgres=postgres, redis=redis).prepare()
    finally:
        redis.destroy()
        postgres.destroy()


@pytest.fixture(scope="package")
def gateway(stack, upstream):
    """The gateway as deployed with Redis: two workers, sessions persisted. Scenarios that fault a
    dependency leave it running; the next scenario is one more proof that it recovered."""
    with Gateway(stack, MCP_SESSIONS_PERSIST="true") as gateway:
        gateway.register("echo", upstream.url())
        yield gateway


@pytest.fixture(scope="package")
def stateful():
    """A stateful SDK upstream speaking the 2025 revisions (sessions, SSE answers; `whoami` names
    the upstream MCP session)."""
    server = launch.start_sdk("faults-stateful", "--mode", "stateful", "--response", "sse", "--family", "legacy")
    try:
        launch.wait_ready(server)
        yield server
    finally:
        server.stop()
