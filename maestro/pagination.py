"""The one pagination of the operator API: `?limit=&offset=`, bounded and strict.

DRF's LimitOffsetPagination ignores a limit it cannot parse and passes any number it can to the
database: `limit=100000000000000000000` or a huge offset overflowed PostgreSQL's bigint (500). Here
both are whole decimal numbers in range, or the request is a 400 naming the parameter.
"""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

from maestro.errors import InvalidInput

MAX_OFFSET = 2**31 - 1


def _bounded(request, name: str, *, default: int, minimum: int, maximum: int) -> int:
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
        return _bounded(request, self.limit_query_param, default=self.default_limit, minimum=1, maximum=self.max_limit)

    def get_offset(self, request):
        return _bounded(request, self.offset_query_param, default=0, minimum=0, maximum=MAX_OFFSET)
