"""Database access for the asynchronous data plane.

PostgreSQL: psycopg's `AsyncConnectionPool`, one per event loop (a worker process), sized by
DATABASE_POOL_SIZE, connecting with exactly the parameters and type adapters Django uses for the
same database. Statements run in autocommit: every write on the hot path is one statement (a
multi-row INSERT is all or nothing), so no BEGIN/COMMIT round trips.

SQLite (the embedded default): there is no async driver worth having; statements run on Django's
own connection in one dedicated thread, off the event loop.

`orm()` runs any synchronous ORM code (rare look-ups on a cache miss: a server by name, an API
key) on a small thread pool, with the connection hygiene of a Django request around it; a database
that cannot be reached there is a 503 `database_unavailable` (`DatabaseUnavailable`) at every door.

Errors come out as three kinds the callers can act on: `Conflict` (a unique constraint), `Refused`
(the database will not store this value: a NUL in text, an out-of-range number), `Unavailable`
(no connection, a connection lost, a pool exhausted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import (
    DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError, close_old_connections, connection, connections,
)

from maestro import errors
from maestro.bridge import per_loop

logger = logging.getLogger("maestro.db")
T = TypeVar("T")
POOL_TIMEOUT_S = 5.0
# How long one background reconnection keeps trying before it gives up and leaves the next
# request to start another at once. psycopg_pool's back-off doubles between attempts (1, 2, 4,
# 8 s, ...), so after an outage of ten seconds a pool could wait longer than POOL_TIMEOUT_S to try
# again and fail calls although PostgreSQL was back; short chains keep recovery under a second.
RECONNECT_S = 1.0
ORM_THREADS = 8


class DatabaseFailure(Exception):
    pass


class Conflict(DatabaseFailure):
    """A unique constraint refused the row (e.g. another process took this evidence seq)."""


class Refused(DatabaseFailure):
    """The database refused a value (NUL in text, a number out of range): retrying cannot help."""


class Unavailable(DatabaseFailure):
    """No usable connection: down, restarting, unreachable, or the pool is exhausted."""


class DatabaseUnavailable(errors.Unavailable):
    """Django cannot reach the database (down, restarting, no connection within the pool's
    timeout): a 503 for any caller, from `orm()` and from the DRF views alike."""

    code = "database_unavailable"

    def __init__(self, message: str = "the database is unavailable; retry shortly", **kwargs) -> None:
        super().__init__(message, **kwargs)


_orm_pool: ThreadPoolExecutor | None = None


def _orm_executor() -> ThreadPoolExecutor:
    global _orm_pool
    if _orm_pool is None:
        _orm_pool = ThreadPoolExecutor(max_workers=ORM_THREADS, thread_name_prefix="maestro-orm")
    return _orm_pool


def _with_connection_hygiene(fn: Callable[..., T], *args, **kwargs) -> T:
    # What Django's request_started/request_finished signals do around a view: a connection
    # broken by a PostgreSQL restart is not reused, and a pooled one goes back to the pool.
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        if getattr(connection, "pool", None) is not None or connection.vendor != "sqlite":
            connection.close()


async def orm(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run synchronous Django ORM code off the event loop."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_orm_executor(), lambda: _with_connection_hygiene(fn, *args, **kwargs))
    except (OperationalError, InterfaceError) as exc:  # no connection (down, restarting, pool timeout)
        raise DatabaseUnavailable() from exc


class _PostgresDatabase:
    vendor = "postgresql"

    def __init__(self) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        self._psycopg = psycopg
        wrapper = connections["default"]
        params = dict(wrapper.get_connection_params())
        params.pop("cursor_factory", None)  # Django's synchronous cursor class
        params["autocommit"] = True
        size = getattr(settings, "DATABASE_POOL_SIZE", 0) or 16
        self._pool = AsyncConnectionPool(
            kwargs=params, min_size=1, max_size=size, timeout=POOL_TIMEOUT_S, open=False, name="maestro-data-plane",
            # A broken connection must not wait out a whole TCP timeout: PostgreSQL restarts show up
            # as a refused reconnect, which the pool retries in the background (see RECONNECT_S).
            reconnect_timeout=RECONNECT_S,
        )
        self._opened = False
        self.statements = 0  # sent (tests count round trips with it)

    async def _open(self) -> None:
        if not self._opened:
            self._opened = True
            await self._pool.open(wait=False)

    def _translate(self, exc: Exception) -> DatabaseFailure:
        errors = self._psycopg.errors
        if isinstance(exc, errors.UniqueViolation):
            return Conflict(str(exc).splitlines()[0] if str(exc) else "unique violation")
        if isinstance(exc, (self._psycopg.DataError, errors.CharacterNotInRepertoire, errors.UntranslatableCharacter)):
            return Refused(type(exc).__name__)
        if isinstance(exc, ValueError) and "NUL" in str(exc):  # psycopg refuses NUL before sending
            return Refused("NUL character")
        return Unavailable(type(exc).__name__)

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        await self._run(sql, params, fetch=False)

    async def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        return await self._run(sql, params, fetch=True)

    async def _run(self, sql: str, params: Sequence[Any], *, fetch: bool):
        from psycopg_pool import PoolTimeout

        await self._open()
        for attempt in (1, 2):
            try:
                async with self._pool.connection() as conn:
                    self.statements += 1
                    cursor = await conn.execute(sql, params, prepare=False)
                    return await cursor.fetchall() if fetch else None
            except PoolTimeout:
                raise Unavailable("no database connection within the pool timeout") from None
            except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
                # A connection that died while idle (PostgreSQL restarted): the statement never ran
                # if the failure came before it was sent; when it might have, the caller's own
                # check decides (evidence re-reads the chain head). Drop the dead ones, once more.
                if attempt == 2:
                    raise self._translate(exc) from exc
                await self._pool.check()
            except (self._psycopg.Error, ValueError) as exc:
                raise self._translate(exc) from exc
        raise AssertionError("unreachable")

    async def locked(self, keys: list[str], sql: str, params: Sequence[Any], then: Callable[[list[tuple]], tuple[str, Sequence[Any]]]) -> None:
        """In one transaction: an advisory lock per key (taken in one fixed order, so two writers
        never deadlock), `sql`, then the statement `then` builds from its rows, and COMMIT. Two
        round trips (pipelined). Writers of the same keys in any process queue on the locks."""
        from psycopg_pool import PoolTimeout

        await self._open()
        for attempt in (1, 2):
            writing = False
            try:
                async with self._pool.connection() as conn:
                    async with conn.pipeline() as pipeline:
                        async with conn.transaction():
                            await conn.execute(
                                "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM (SELECT unnest(%s::text[]) AS k ORDER BY 1) AS keys",
                                [sorted(set(keys))], prepare=False,
                            )
                            cursor = await conn.execute(sql, params, prepare=False)
                            await pipeline.sync()
                            rows = await cursor.fetchall()
                            next_sql, next_params = then(rows)
                            writing = True
                            await conn.execute(next_sql, next_params, prepare=False)
                return
            except PoolTimeout:
                raise Unavailable("no database connection within the pool timeout") from None
            except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
                # Lost before the write was sent (a connection that died while idle, PostgreSQL
                # restarted): nothing can have been written, so drop the dead ones and go again.
                # Once the write is sent the commit may have happened: the caller decides.
                if writing or attempt == 2:
                    raise self._translate(exc) from exc
                await self._pool.check()
            except (self._psycopg.Error, ValueError) as exc:
                raise self._translate(exc) from exc

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


class _ThreadDatabase:
    """Django's connection, in one thread of its own (SQLite: one writer at a time anyway)."""

    def __init__(self) -> None:
        self.vendor = connections["default"].vendor
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maestro-db")
        self.statements = 0

    def _call(self, sql: str, params: Sequence[Any], fetch: bool):
        self.statements += 1
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall() if fetch else None
        except IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except DataError as exc:
            raise Refused(type(exc).__name__) from exc
        except (DatabaseError, ValueError) as exc:
            connection.close()
            raise Unavailable(type(exc).__name__) from exc

    async def execute(self, sql: str, params: Sequence[Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._call, sql, params, False)

    async def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, sql, params, True)

    def _locked(self, sql: str, params: Sequence[Any], then) -> None:
        from django.db import transaction

        try:
            with transaction.atomic():  # SQLite: one writer at a time anyway, no lock to take
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    next_sql, next_params = then(cursor.fetchall())
                    cursor.execute(next_sql, next_params)
        except IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except DataError as exc:
            raise Refused(type(exc).__name__) from exc
        except (DatabaseError, ValueError) as exc:
            connection.close()
            raise Unavailable(type(exc).__name__) from exc

    async def locked(self, keys: list[str], sql: str, params: Sequence[Any], then) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._locked, sql, params, then)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)


def _make() -> _PostgresDatabase | _ThreadDatabase:
    if connections["default"].vendor == "postgresql":
        return _PostgresDatabase()
    return _ThreadDatabase()


database = per_loop(_make)


def placeholders(count: int, width: int) -> str:
    """`(%s, ..., %s), (...)` for `count` rows of `width` values."""
    one = "(" + ", ".join(["%s"] * width) + ")"
    return ", ".join([one] * count)
