from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, content_negotiation_class, renderer_classes
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from maestro.pagination import MAX_OFFSET, bounded_number, page_openapi_parameters, page_schema
from mcp.models import Invocation
from mcp.services.evidence_chain import evidence_listing
from mcp.services.evidence_file import evidence_jsonl
from sessions_app.runs import run_id_openapi_parameter, validate_run_id

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _row(row: Invocation) -> dict:
    return {
        "id": str(row.id), "seq": row.seq, "session_id": row.session_id, "server_id": row.server_id, "server": row.server_name,
        "tool": row.tool, "status": row.status, "error_code": row.error_code, "is_error": row.is_error,
        "latency_ms": row.latency_us / 1000, "arguments_digest": row.arguments_digest, "result_digest": row.result_digest,
        "receipt": row.receipt, "transport": row.transport, "kind": row.kind, "created_at": row.created_at.isoformat(),
        "prev_hash": row.prev_hash, "hash": row.hash,
    }


_ROW_SCHEMA = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in ("id", "session_id", "server_id", "server", "tool", "error_code", "arguments_digest",
                                                  "result_digest", "receipt", "transport", "prev_hash", "hash")},
        "seq": {"type": "integer"}, "status": {"type": "string", "enum": ["success", "error", "denied"]}, "is_error": {"type": "boolean"},
        "latency_ms": {"type": "number"}, "created_at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "seq", "tool", "status", "hash", "prev_hash"],
}
_CHAIN = {"type": "string", "enum": ["valid", "pending", "broken"]}
_VERIFICATION = {
    "type": "object",
    "properties": {
        "chain": _CHAIN, "verified_through": {"type": "integer"}, "length": {"type": "integer"},
        "verified_at": {"type": "string", "format": "date-time", "nullable": True},
        "full_check_at": {"type": "string", "format": "date-time", "nullable": True},
        "at_seq": {"type": "integer"}, "reason": {"type": "string"},
    },
    "required": ["chain", "verified_through", "length"],
}
_PAGE = page_schema(_ROW_SCHEMA)
EVIDENCE_SCHEMA = {
    **_PAGE,
    "properties": {**_PAGE["properties"], "run_id": {"type": "string"}, "chain": _CHAIN, "verification": _VERIFICATION},
    "required": [*_PAGE["required"], "run_id", "chain", "verification"],
}
_AFTER_SEQ = OpenApiParameter("after_seq", type={"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}, location=OpenApiParameter.QUERY,
                              required=False, description="rows after this seq (what `next` uses; as fast deep in the chain as at its start)")


class _EvidencePaging:
    default_limit, max_limit = DEFAULT_LIMIT, MAX_LIMIT

    def get_schema_operation_parameters(self, view):
        from maestro.pagination import page_parameters

        return page_parameters(default=DEFAULT_LIMIT, maximum=MAX_LIMIT)


@extend_schema(operation_id="run_evidence", tags=["evidence"], summary="The run's evidence rows and how far its chain is verified",
               parameters=[run_id_openapi_parameter(), *page_openapi_parameters(_EvidencePaging()), _AFTER_SEQ],
               responses={200: EVIDENCE_SCHEMA})
@api_view(["GET"])
def run_evidence(request, run_id: str):
    """The run's evidence rows in chain order (`?after_seq=&limit=`, or `?offset=`), and how far
    the chain is verified: the stored checkpoint brought forward, and this page's rows re-hashed.
    `count` is the chain's length (its newest row's seq); `next` pages by `after_seq`."""
    validate_run_id(run_id)
    limit = bounded_number(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    after_seq = bounded_number(request, "after_seq", default=0, minimum=0, maximum=MAX_OFFSET)
    offset = bounded_number(request, "offset", default=0, minimum=0, maximum=MAX_OFFSET)
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


class _AnyAccept(BaseContentNegotiation):
    """The export answers JSON Lines whatever the client accepts, and its errors the one JSON
    error shape (never a 406 for `Accept: application/x-ndjson`, never an error labelled ndjson)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema(operation_id="run_evidence_export", tags=["evidence"], summary="The run's whole chain as JSON Lines",
               parameters=[run_id_openapi_parameter()], responses={(200, "application/x-ndjson"): {"type": "string"}})
@api_view(["GET"])
@renderer_classes([JSONRenderer])
@content_negotiation_class(_AnyAccept)
def run_evidence_export(request, run_id: str):
    """The run's whole chain as JSON Lines, streamed (`mcp_evidence verify --file` checks it)."""
    validate_run_id(run_id)
    return evidence_jsonl_response(run_id)


def evidence_jsonl_response(run_id: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(evidence_jsonl(run_id=run_id), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="evidence-{run_id}.jsonl"'
    response["Cache-Control"] = "no-store"
    return response
