"""Conductor Studio's run page, "Tools & Evidence": one service per view, built from the same
services and rules as the API (sessions, the invoke path's tool rules, incremental chain checks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from maestro import errors
from mcp import policy, selectors
from mcp.models import Invocation
from mcp.receipts import receipt_verify
from mcp.services import evidence_chain
from mcp.services.evidence import GENESIS, row_hash
from mcp.services.toolview import tools_callable
from mcp.upstream import errors as upstream_errors
from sessions_app import selectors as session_selectors
from sessions_app.runs import validate_run_id
from sessions_app.selectors import ACTIVE, SessionRecord

SESSIONS_SHOWN = 50
STATUSES = tuple(value for value, _ in Invocation.STATUS_CHOICES)


@dataclass(frozen=True)
class SessionRow:
    record: SessionRecord
    status: str
    server_names: list[str]  # empty: any server
    may_invoke: bool


@dataclass
class ServerTools:
    name: str
    enabled: bool
    fetched_at: datetime | None
    discovered: bool  # a tool list is stored
    total: int
    tools: dict[str, dict] = field(default_factory=dict)  # name -> {description, inputSchema, sessions}


@dataclass(frozen=True)
class EvidenceFilters:
    status: str = ""
    server: str = ""
    tool: str = ""
    before: int | None = None
    after: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.status or self.server or self.tool)


@dataclass(frozen=True)
class TimelineRow:
    row: Invocation
    decision: str  # allow | deny | "" (no policy decision: refused before one, or an upstream failure)
    reason: str


@dataclass(frozen=True)
class RunTab:
    run_id: str
    sessions: list[SessionRow]
    sessions_total: int
    tools: list[ServerTools]
    page: selectors.EvidencePage
    timeline: list[TimelineRow]
    chain: evidence_chain.ChainStatus
    filters: EvidenceFilters
    server_options: list[str]
    tool_options: list[str]


def evidence_filters(*, status: str = "", server: str = "", tool: str = "", before: str = "", after: str = "") -> EvidenceFilters:
    """Query-string values, checked: a clear 400 naming the parameter, never a 500."""
    if status and status not in STATUSES:
        raise errors.InvalidInput(f"status: use one of {', '.join(STATUSES)}", details={"field": "status"})
    if len(server) > 64 or len(tool) > 128:
        raise errors.InvalidInput("server or tool: too long", details={"field": "server" if len(server) > 64 else "tool"})
    return EvidenceFilters(status=status, server=server, tool=tool, before=_seq(before, "before"), after=_seq(after, "after"))


def _seq(value: str, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise errors.InvalidInput(f"{name}: a sequence number", details={"field": name})
    return int(value)


def run_tab(*, run_id: str, filters: EvidenceFilters) -> RunTab:
    run_id = validate_run_id(run_id)
    records = session_selectors.session_list(run_id=run_id)
    total = len(records)
    shown = list(records[:SESSIONS_SHOWN])
    names = selectors.server_names(ids={server for record in shown for server in record.servers})
    now = datetime.now(tz=UTC)
    sessions = [
        SessionRow(
            record=record, status=record.status(now), server_names=[names.get(s, f"{s[:8]}… (deleted)") for s in record.servers],
            may_invoke=policy.builtin_check_scope(session_scopes=frozenset(record.scopes)) is None,
        )
        for record in shown
    ]
    chain = evidence_chain.chain_status(run_id=run_id)
    page = selectors.evidence_page(
        run_id=run_id, status=filters.status, server=filters.server, tool=filters.tool, before=filters.before, after=filters.after,
    )
    chain = evidence_chain.chain_check_shown(status=chain, rows=page.rows, consecutive=not filters.active)
    return RunTab(
        run_id=run_id, sessions=sessions, sessions_total=total, tools=_callable_by_server(sessions), page=page,
        timeline=[TimelineRow(row, *_decision(row.receipt)) for row in page.rows], chain=chain,
        filters=filters, server_options=sorted(set(chain.servers) | ({filters.server} - {""})),
        tool_options=sorted(set(chain.tools) | ({filters.tool} - {""})),
    )


def _callable_by_server(sessions: list[SessionRow]) -> list[ServerTools]:
    """For each server, the tools at least one active session may call, and which sessions."""
    active = [s for s in sessions if s.status == ACTIVE and s.may_invoke]
    if not active:
        return []
    servers = selectors.servers_with_tools()
    listing = [(server, server.tools_cache or []) for server in servers]
    by_name = {
        server.name: ServerTools(
            name=server.name, enabled=server.enabled, fetched_at=server.tools_fetched_at, discovered=server.tools_cache is not None,
            total=len(server.tools_cache or []),
        )
        for server in servers
    }
    reachable: set[str] = set()
    for session in active:
        reachable.update(server.name for server in servers if not session.record.servers or str(server.id) in session.record.servers)
        for tool in tools_callable(scopes=frozenset(session.record.scopes), servers=session.record.servers, server_tools=listing):
            entry = by_name[tool["server"]].tools.setdefault(
                tool["name"], {"description": tool["description"], "inputSchema": tool["inputSchema"], "sessions": []},
            )
            entry["sessions"].append(session.record.sid)
    return [by_name[name] for name in sorted(reachable)]


def _decision(receipt: str) -> tuple[str, str]:
    claims, _ = receipt_verify(receipt=receipt) if receipt else (None, False)
    if not claims:
        return "", ""
    return str(claims.get("decision", "")), str(claims.get("reason", ""))


def run_live(*, run_id: str) -> evidence_chain.ChainStatus:
    """For the page's poll: where the chain stands now (head and verification)."""
    return evidence_chain.chain_status(run_id=validate_run_id(run_id))


@dataclass(frozen=True)
class EvidenceDetail:
    row: Invocation
    claims: dict | None  # the decoded policy receipt
    receipt_valid: bool
    content_ok: bool  # the row's fields hash to its hash
    link_ok: bool | None  # its prev_hash is the previous row's hash (None: that row is gone)
    error_meaning: str  # what an upstream error code means, from the error classes themselves
    has_next: bool


def _upstream_meanings() -> dict[str, str]:
    found = {}
    for value in vars(upstream_errors).values():
        if isinstance(value, type) and issubclass(value, errors.GatewayError) and value.__module__ == upstream_errors.__name__:
            found[value.code] = (value.__doc__ or "").strip().split("\n")[0]
    return found


UPSTREAM_MEANINGS = _upstream_meanings()


def evidence_detail(*, run_id: str, seq: int) -> EvidenceDetail:
    run_id = validate_run_id(run_id)
    row, previous_hash, has_next = selectors.evidence_row(run_id=run_id, seq=seq)
    if row is None:
        raise errors.NotFound(f"run {run_id!r} has no evidence row #{seq}", code="evidence_not_found")
    claims, valid = receipt_verify(receipt=row.receipt) if row.receipt else (None, False)
    expected_prev = GENESIS if seq == 1 else previous_hash
    return EvidenceDetail(
        row=row, claims=claims, receipt_valid=valid,
        content_ok=row_hash(prev_hash=row.prev_hash, fields=row.__dict__) == row.hash,
        link_ok=None if expected_prev is None else row.prev_hash == expected_prev,
        error_meaning=UPSTREAM_MEANINGS.get(row.error_code, ""), has_next=has_next,
    )
