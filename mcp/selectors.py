"""Reads for the operator pages and the evidence API. Each answers in a fixed number of queries,
whatever the number of servers or rows, and evidence is read by keyset on (run_id, seq), so a
page deep in a million-row run costs what the first one does."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Func, IntegerField, Q

from mcp.models import McpServer, Invocation

EVIDENCE_PAGE = 50


class JsonArrayLength(Func):
    """The length of a JSON array column (NULL stays NULL): counts stored tools without loading them."""

    function = "json_array_length"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, function="jsonb_array_length", **extra)


def server_rows(servers):
    """The registry table's columns for a queryset of servers: the tool lists and the server info
    stay in the database, only their size comes back."""
    return servers.defer("tools_cache", "health_server_info", "auth_headers_encrypted", "description").annotate(
        tool_count=JsonArrayLength("tools_cache")
    )


def server_tags() -> list[str]:
    return sorted({tag for tags in McpServer.objects.values_list("tags", flat=True) for tag in (tags or [])})


def server_health(*, ids: list[str]) -> list[dict]:
    return list(
        McpServer.objects.filter(pk__in=ids).values("id", "health_status", "health_latency_ms", "health_checked_at", "health_error")
    )


def server_recent_calls(*, server: McpServer, limit: int = 20) -> list[Invocation]:
    """The newest evidence rows naming the server (by the (server_name, created_at) index); calls
    refused before the server was resolved carry its name but no id."""
    return list(
        Invocation.objects.filter(Q(server_id=str(server.pk)) | Q(server_id=""), server_name=server.name)
        .order_by("-created_at")
        .defer("receipt")[:limit]
    )


def servers_with_tools() -> list[McpServer]:
    """Every server with what the tool rules need and its stored tool list (no upstream call)."""
    return list(
        McpServer.objects.only("id", "name", "enabled", "scopes", "tool_allow", "tool_deny", "tools_cache", "tools_fetched_at").order_by("name")
    )


def server_names(*, ids) -> dict[str, str]:
    return {str(pk): name for pk, name in McpServer.objects.filter(pk__in=list(ids)).values_list("pk", "name")}


@dataclass(frozen=True)
class EvidencePage:
    rows: list[Invocation]  # newest first
    has_newer: bool
    has_older: bool


def evidence_page(*, run_id: str, status: str = "", server: str = "", tool: str = "", before: int | None = None,
                  after: int | None = None, limit: int = EVIDENCE_PAGE) -> EvidencePage:
    """A page of the run's timeline, newest first: the newest rows, those before seq `before`, or
    those after seq `after`; filtered by exact status, server name and tool."""
    rows = Invocation.objects.filter(run_id=run_id)
    if status:
        rows = rows.filter(status=status)
    if server:
        rows = rows.filter(server_name=server)
    if tool:
        rows = rows.filter(tool=tool)
    if after is not None:
        found = list(rows.filter(seq__gt=after).order_by("seq")[: limit + 1])
        return EvidencePage(rows=found[:limit][::-1], has_newer=len(found) > limit, has_older=True)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    found = list(rows.order_by("-seq")[: limit + 1])
    return EvidencePage(rows=found[:limit], has_newer=before is not None, has_older=len(found) > limit)


def evidence_in_order(*, run_id: str, after_seq: int = 0, offset: int = 0, limit: int) -> list[Invocation]:
    """Rows in chain order (the evidence API): after seq `after_seq` by index, then `offset` rows on."""
    return list(Invocation.objects.filter(run_id=run_id, seq__gt=after_seq).order_by("seq")[offset : offset + limit])


def evidence_seq_before(*, run_id: str, seq: int, back: int) -> int | None:
    """The seq `back` rows before `seq` (for a "previous page" link), 0 when fewer rows precede it,
    None when none do."""
    found = list(Invocation.objects.filter(run_id=run_id, seq__lt=seq).order_by("-seq").values_list("seq", flat=True)[:back])
    if not found:
        return None
    return found[-1] - 1 if len(found) == back else 0


def evidence_row(*, run_id: str, seq: int) -> tuple[Invocation | None, str | None, bool]:
    """One row, the hash of the row before it (None for #1 or when that row is gone), and whether
    a row follows it."""
    rows = {row.seq: row for row in Invocation.objects.filter(run_id=run_id, seq__in=[seq - 1, seq, seq + 1])}
    previous = rows.get(seq - 1)
    return rows.get(seq), previous.hash if previous else None, seq + 1 in rows
