"""Run identifiers, checked the same way by every route that has `{runId}` in its path."""

from __future__ import annotations

import re

from maestro import errors

RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def validate_run_id(run_id) -> str:
    """`run_id` unchanged, or InvalidInput (400, code invalid_run_id, field run_id)."""
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise errors.InvalidInput(
            "run_id: use 1-128 characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            code="invalid_run_id",
            details={"field": "run_id"},
        )
    return run_id


def run_id_openapi_parameter():
    """The `run_id` path parameter as the OpenAPI document describes it (the same rule)."""
    from drf_spectacular.utils import OpenApiParameter

    return OpenApiParameter("run_id", type={"type": "string", "pattern": f"^{RUN_ID_RE.pattern}$"}, location=OpenApiParameter.PATH,
                            description="the run: 1-128 of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit")
