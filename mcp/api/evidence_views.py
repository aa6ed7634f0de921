from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.response import Response

from maestro.pagination import BoundedLimitOffsetPagination, page_openapi_parameters, page_schema
from mcp.models import Invocation
from mcp.services.evidence import evidence_verify
from sessions_app.runs import run_id_openapi_parameter, validate_run_id


class EvidencePagination(BoundedLimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def _row(row: Invocation) -> dict:
    return {
        "id": str(row.id), "seq": row.seq, "session_id": row.session_id, "server_id": row.server_id, "server": row.server_name,
        "tool": row.tool, "status": row.status, "error_code": row.error_code, "is_error": row.is_error,
        "latency_ms": row.latency_us / 1000, "arguments_digest": row.arguments_digest, "result_digest": row.result_digest,
        "receipt": row.receipt, "transport": row.transport, "created_at": row.created_at.isoformat(),
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
_VERIFICATION = {
    "type": "object",
    "properties": {
        "chain": {"type": "string", "enum": ["valid", "broken"]}, "length": {"type": "integer"},
        "head": {"type": "string", "nullable": True}, "at_seq": {"type": "integer"}, "reason": {"type": "string"},
    },
    "required": ["chain", "length"],
}
_PAGE = page_schema(_ROW_SCHEMA)
EVIDENCE_SCHEMA = {
    **_PAGE,
    "properties": {**_PAGE["properties"], "run_id": {"type": "string"}, "chain": {"type": "string", "enum": ["valid", "broken"]},
                   "verification": _VERIFICATION},
    "required": [*_PAGE["required"], "run_id", "chain", "verification"],
}


@extend_schema(operation_id="run_evidence", tags=["evidence"], summary="The run's evidence rows and whether the chain verifies",
               parameters=[run_id_openapi_parameter(), *page_openapi_parameters(EvidencePagination())], responses={200: EVIDENCE_SCHEMA})
@api_view(["GET"])
def run_evidence(request, run_id: str):
    """The run's evidence rows (paginated, in chain order) and whether the whole chain verifies."""
    validate_run_id(run_id)
    paginator = EvidencePagination()
    page = paginator.paginate_queryset(Invocation.objects.filter(run_id=run_id).order_by("seq"), request)
    response = paginator.get_paginated_response([_row(row) for row in page])
    response.data["run_id"] = run_id
    response.data["verification"] = evidence_verify(run_id=run_id)
    response.data["chain"] = response.data["verification"]["chain"]
    return response
