import json

from django.http import StreamingHttpResponse
from rest_framework.decorators import api_view, renderer_classes
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from maestro.errors import InvalidInput
from mcp.models import Invocation
from mcp.services.evidence_chain import evidence_listing
from mcp.services.evidence_file import evidence_jsonl
from sessions_app.runs import validate_run_id

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_NUMBER = 10**15


def _row(row: Invocation) -> dict:
    return {
        "id": str(row.id), "seq": row.seq, "session_id": row.session_id, "server_id": row.server_id, "server": row.server_name,
        "tool": row.tool, "status": row.status, "error_code": row.error_code, "is_error": row.is_error,
        "latency_ms": row.latency_us / 1000, "arguments_digest": row.arguments_digest, "result_digest": row.result_digest,
        "receipt": row.receipt, "transport": row.transport, "kind": row.kind, "created_at": row.created_at.isoformat(),
        "prev_hash": row.prev_hash, "hash": row.hash,
    }


def _number(request, name: str, default: int, minimum: int, maximum: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not minimum <= int(value) <= maximum:
        raise InvalidInput(f"{name}: a whole number from {minimum} to {maximum}", details={"field": name})
    return int(value)


@api_view(["GET"])
def run_evidence(request, run_id: str):
    """The run's evidence rows in chain order (`?after_seq=&limit=`, or `?offset=`), and how far
    the chain is verified: the stored checkpoint brought forward, and this page's rows re-hashed.
    `count` is the chain's length (its newest row's seq); `next` pages by `after_seq`."""
    validate_run_id(run_id)
    limit = _number(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    after_seq = _number(request, "after_seq", 0, 0, MAX_NUMBER)
    offset = _number(request, "offset", 0, 0, MAX_NUMBER)
    listing = evidence_listing(run_id=run_id, after_seq=after_seq, offset=offset, limit=limit)
    url = remove_query_param(request.build_absolute_uri(), "offset")
    last = listing.rows[-1].seq if listing.rows else None
    verification = listing.status.as_json()
    return Response({
        "count": listing.status.head_seq,
        "next": replace_query_param(url, "after_seq", last) if last is not None and last < listing.status.head_seq else None,
        "previous": None if listing.previous_after is None else replace_query_param(url, "after_seq", listing.previous_after),
        "results": [_row(row) for row in listing.rows],
        "run_id": run_id,
        "chain": verification["chain"],
        "verification": verification,
    })


class JsonLinesRenderer(BaseRenderer):
    """Lets a client ask for `Accept: application/x-ndjson`; errors are still one JSON object."""

    media_type = "application/x-ndjson"
    format = "jsonl"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode()


@api_view(["GET"])
@renderer_classes([JSONRenderer, JsonLinesRenderer])
def run_evidence_export(request, run_id: str):
    """The run's whole chain as JSON Lines, streamed (`mcp_evidence verify --file` checks it)."""
    validate_run_id(run_id)
    return evidence_jsonl_response(run_id)


def evidence_jsonl_response(run_id: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(evidence_jsonl(run_id=run_id), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="evidence-{run_id}.jsonl"'
    response["Cache-Control"] = "no-store"
    return response
