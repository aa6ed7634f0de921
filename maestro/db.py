"""A hand-written multi-row INSERT for the hot paths (evidence rows, persisted sessions).

Why not Model.save()/objects.create(): on a path that writes one row per request, the ORM's model
construction and SQL compilation cost more CPU than the database round trip itself (measured:
about 0.2 ms of 0.3). Values still go through each field's own conversion for the database in
use, so the row is exactly what the ORM would have written.
"""

from __future__ import annotations

from django.db import connection, models


class RowInserter:
    def __init__(self, model, field_names: tuple[str, ...]):
        self.model = model
        self.fields = [model._meta.get_field(name) for name in field_names]
        self._heads: dict[str, str] = {}  # "INSERT INTO ... VALUES " by database vendor
        self._one = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self._json: tuple[bool, ...] | None = None

    def sql(self, count: int) -> str:
        head = self._heads.get(connection.vendor)
        if head is None:
            quote = connection.ops.quote_name
            columns = ", ".join(quote(field.column) for field in self.fields)
            head = self._heads[connection.vendor] = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) VALUES "
        return head + ", ".join([self._one] * count)

    def _unnest_sql(self) -> str:
        head = self._heads.get("postgresql-unnest")
        if head is None:
            quote = connection.ops.quote_name
            columns = ", ".join(quote(field.column) for field in self.fields)
            arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in self.fields)
            head = self._heads["postgresql-unnest"] = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) SELECT * FROM unnest({arrays})"
        return head

    def params(self, rows: list[dict]) -> list:
        return [field.get_db_prep_save(row[field.name], connection) for row in rows for field in self.fields]

    def statement(self, rows: list[dict]) -> tuple[str, list]:
        """(sql, params) writing `rows` in one statement on the data plane's own connections.

        PostgreSQL: the values as they are, psycopg adapting each (UUIDs, datetimes, ...; JSON
        wrapped as jsonb), not each through its Django field's conversion, which cost more CPU than
        the round trip on the invoke path (measured: 0.3 to 0.5 ms of 1.7 per call). The field
        types are the ones psycopg maps to the columns' own (uuid, varchar, bigint, boolean, timestamptz).
        Elsewhere (SQLite), the fields' own conversions, as `insert` does."""
        if connection.vendor != "postgresql":
            return self.sql(len(rows)), self.params(rows)
        if self._json is None:
            self._json = tuple(isinstance(field, models.JSONField) for field in self.fields)
        if len(rows) > 1 and not any(self._json):
            # One array per column: the same statement text and parameter count whatever the
            # number of rows, so psycopg converts it once and caches it. VALUES (...), (...) has
            # 19 parameters a row and psycopg caches no statement past 50: each batch was parsed
            # again, about 3 ms of CPU for 16 rows.
            return self._unnest_sql(), [[row[field.name] for row in rows] for field in self.fields]
        if any(self._json):
            from psycopg.types.json import Jsonb

            params = [Jsonb(row[field.name]) if json else row[field.name] for row in rows for field, json in zip(self.fields, self._json)]
        else:
            params = [row[field.name] for row in rows for field in self.fields]
        return self.sql(len(rows)), params

    def insert(self, rows: list[dict]) -> None:
        """One statement for all `rows` (so all or none are written), on the current connection."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql(len(rows)), self.params(rows))
