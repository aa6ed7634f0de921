"""The one pagination of the operator API: `?limit=&offset=`, bounded and strict.

DRF's LimitOffsetPagination ignores a limit it cannot parse and passes any number it can to the
database: `limit=100000000000000000000` or a huge offset overflowed PostgreSQL's bigint (500). Here
both are whole decimal numbers in range, or the request is a 400 naming the parameter.
"""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

from maestro.errors import InvalidInput

MAX_OFFSET = 2**31 - 1


def bounded_number(request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A query parameter that must be a whole decimal number in range (400 naming it otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12) or not minimum <= int(raw) <= maximum:
        raise InvalidInput(f"{name}: use a whole number from {minimum} to {maximum}", details={"field": name})
    return int(raw)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    # default_limit: REST_FRAMEWORK["PAGE_SIZE"]
    max_limit = 1000

    def get_limit(self, request):
        return bounded_number(request, self.limit_query_param, default=self.default_limit, minimum=1, maximum=self.max_limit)

    def get_offset(self, request):
        return bounded_number(request, self.offset_query_param, default=0, minimum=0, maximum=MAX_OFFSET)

    def get_schema_operation_parameters(self, view):
        return page_parameters(default=self.default_limit, maximum=self.max_limit)


def page_parameters(*, default: int, maximum: int) -> list[dict]:
    """The two query parameters as OpenAPI describes them."""
    return [
        {"name": "limit", "in": "query", "required": False, "description": f"page size (default {default})",
         "schema": {"type": "integer", "minimum": 1, "maximum": maximum}},
        {"name": "offset", "in": "query", "required": False, "description": "rows to skip",
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
    ]


def page_openapi_parameters(paginator: LimitOffsetPagination) -> list:
    """The same, for `extend_schema(parameters=...)` on views that page by hand."""
    from drf_spectacular.utils import OpenApiParameter

    return [
        OpenApiParameter(p["name"], type=p["schema"], location=OpenApiParameter.QUERY, required=False, description=p["description"])
        for p in paginator.get_schema_operation_parameters(None)
    ]


def page_schema(item: dict) -> dict:
    """The JSON schema of one page of `item`s."""
    return {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "next": {"type": "string", "format": "uri", "nullable": True},
            "previous": {"type": "string", "format": "uri", "nullable": True},
            "results": {"type": "array", "items": item},
        },
        "required": ["count", "next", "previous", "results"],
    }
