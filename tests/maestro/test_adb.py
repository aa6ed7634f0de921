"""The data plane's database access when connections die: a connection PostgreSQL closed while it
sat idle in the pool is replaced before anything is written on it (not a 503 for the call that
happens to draw it), and a database Django cannot reach is a 503 at every door, never a 500."""

from __future__ import annotations

import asyncio

import pytest
from django.db import OperationalError, connection

from maestro import adb, bridge
from maestro.api_errors import exception_handler, status_for
from tests.support.services import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def terminate(pid: int) -> None:
    """Close one backend's connection from the server side, as a PostgreSQL restart does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert wait_until(lambda: not backend_alive(pid), timeout=5)


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


async def with_a_dead_idle_connection(use):
    """A pool of its own (a fresh event loop's) whose one connection PostgreSQL has closed."""
    database = adb.database()
    try:
        [(pid,)] = await database.fetchall("SELECT pg_backend_pid()", [])
        await asyncio.to_thread(terminate, pid)
        return await use(database)
    finally:
        await database.close()


def locked_write(database):
    return database.locked(["run-a"], "SELECT 1", [], lambda rows: ("SELECT %s", [len(rows)]))


def plain_read(database):
    return database.fetchall("SELECT 42", [])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL pools only")
@pytest.mark.parametrize("use", [locked_write, plain_read], ids=["locked write", "statement"])
def test_a_connection_closed_while_idle_is_replaced_before_use(use):
    # Given a pooled connection that PostgreSQL closed, when it is drawn next, the work succeeds
    # on a fresh one (nothing had been sent on the dead one, so nothing can have run twice)
    asyncio.run(with_a_dead_idle_connection(use))


def test_orm_code_that_cannot_reach_the_database_is_a_503():
    def lost():
        raise OperationalError("couldn't get a connection after 5.00 sec")

    with pytest.raises(adb.DatabaseUnavailable) as raised:
        bridge.run(adb.orm(lost))
    assert raised.value.code == "database_unavailable" and status_for(raised.value) == 503


def test_the_control_plane_answers_a_lost_database_with_503():
    response = exception_handler(OperationalError("server closed the connection unexpectedly"), {})
    assert response.status_code == 503
    assert response.data["error"]["code"] == "database_unavailable"
    assert "server closed" not in str(response.data)
