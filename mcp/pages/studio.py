"""Conductor Studio: `/studio/runs` (recent runs) and `/studio/runs/{runId}` with its "Tools &
Evidence" tab: sessions, the tools the run may call, the evidence timeline with its chain badge,
one row's detail, and the JSON Lines export. Revoking needs `mcp:sessions`; re-verifying the chain
from #1 needs `admin:mcp` (both or the ADMIN role)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mcp.api.evidence_views import evidence_jsonl_response
from mcp.pages.access import operator_page, page
from mcp.services import evidence_chain, studio
from mcp.templatetags.pages import chain_words
from sessions_app import scopes as S
from sessions_app.runs import validate_run_id
from sessions_app.services import session_revoke
from sessions_app.selectors import session_get

RECHECK_BUDGET_S = 0.5


@require_GET
@operator_page()
def run_index(request):
    wanted = request.GET.get("run", "").strip()
    if wanted:
        return redirect("pages-run", run_id=validate_run_id(wanted))
    return page(request, "studio/runs.html", {"runs": evidence_chain.runs_recent()})


@require_GET
@operator_page()
def run_detail(request, run_id: str):
    filters = studio.evidence_filters(**{name: request.GET.get(name, "").strip() for name in ("status", "server", "tool", "before", "after")})
    tab = studio.run_tab(run_id=run_id, filters=filters)
    kept = {name: getattr(filters, name) for name in ("status", "server", "tool") if getattr(filters, name)}
    rows = tab.page.rows
    return page(request, "studio/run.html", {
        "tab": tab, "chain": chain_words(tab.chain), "filter_query": urlencode(kept), "statuses": studio.STATUSES,
        "older_query": urlencode({**kept, "before": rows[-1].seq}) if rows and tab.page.has_older else "",
        "newer_query": urlencode({**kept, "after": rows[0].seq}) if rows and tab.page.has_newer else "",
        # The newest page notices calls made after it was drawn; older pages do not (-1).
        "shown_head": tab.chain.head_seq if filters.before is None and filters.after is None else -1,
    })


@require_GET
@operator_page(json=True)
def run_live(request, run_id: str):
    """For the run page's poll: the chain's newest seq and badge."""
    status = studio.run_live(run_id=run_id)
    return JsonResponse({"head_seq": status.head_seq, "chain": chain_words(status)})


@require_GET
@operator_page()
def evidence_row(request, run_id: str, seq: int):
    return page(request, "studio/evidence_row.html", {"detail": studio.evidence_detail(run_id=run_id, seq=seq)})


@require_GET
@operator_page()
def evidence_export(request, run_id: str):
    return evidence_jsonl_response(validate_run_id(run_id))


@require_http_methods(["GET", "POST"])
@operator_page(S.SESSIONS)
def session_revoke_page(request, run_id: str, sid: str):
    if request.method == "GET":
        return page(request, "studio/confirm_revoke.html", {"run_id": run_id, "session": session_get(run_id=run_id, sid=sid)})
    record = session_revoke(run_id=run_id, sid=sid)
    messages.warning(request, f"Session {record.sid[:8]} is revoked: its token is refused from now on (401 session_revoked).")
    return redirect("pages-run", run_id=run_id)


@require_POST
@operator_page(S.ADMIN)
def run_reverify(request, run_id: str):
    status = evidence_chain.chain_reverify(run_id=validate_run_id(run_id), budget_s=RECHECK_BUDGET_S)
    words = chain_words(status)
    level = messages.ERROR if status.state == "broken" else messages.SUCCESS if status.state == "valid" else messages.INFO
    messages.add_message(request, level, f"Verified again from #1: {words['label']}.")
    return redirect("pages-run", run_id=run_id)
