from rest_framework.decorators import api_view
from rest_framework.response import Response

from maestro.pagination import BoundedLimitOffsetPagination
from mcp.models import Invocation
from mcp.services.evidence import evidence_verify
from sessions_app.runs import validate_run_id


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
