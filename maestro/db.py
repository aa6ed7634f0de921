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

    def sql(self, count: int) -> str:
        head = self._heads.get(connection.vendor)
        if head is None:
            quote = connection.ops.quote_name
            columns = ", ".join(quote(field.column) for field in self.fields)
            head = self._heads[connection.vendor] = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) VALUES "
        return head + ", ".join([self._one] * count)

    def params(self, rows: list[dict]) -> list:
        return [field.get_db_prep_save(row[field.name], connection) for row in rows for field in self.fields]

    def statement(self, rows: list[dict]) -> tuple[str, list]:
        """(sql, params) writing `rows` in one statement on the data plane's own connections.

        PostgreSQL: one array per column, through unnest, so the statement's text is the same for
        any number of rows and the values go as they are (psycopg adapts UUIDs, datetimes, ...):
        a VALUES list is a new text per batch size, which psycopg parses anew past 4 kB (a batch
        of 200 rows is 3,600 placeholders), and each value through its field's conversion cost
        more CPU than the round trip (measured on the invoke path: 0.7 of 1.7 ms per call).
        Elsewhere (SQLite), VALUES with the fields' own conversions, as `insert` does."""
        if connection.vendor != "postgresql":
            return self.sql(len(rows)), self.params(rows)
        unnest = self._heads.get("postgresql:unnest")
        if unnest is None:
            quote = connection.ops.quote_name
            columns = ", ".join(quote(field.column) for field in self.fields)
            arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in self.fields)
            unnest = self._heads["postgresql:unnest"] = f"INSERT INTO {quote(self.model._meta.db_table)} ({columns}) SELECT * FROM unnest({arrays})"
        return unnest, [self._pg_column(field, rows) for field in self.fields]

    @staticmethod
    def _pg_column(field, rows: list[dict]) -> list:
        if isinstance(field, models.JSONField):
            from psycopg.types.json import Jsonb

            return [Jsonb(row[field.name]) for row in rows]
        return [row[field.name] for row in rows]

    def insert(self, rows: list[dict]) -> None:
        """One statement for all `rows` (so all or none are written), on the current connection."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql(len(rows)), self.params(rows))
