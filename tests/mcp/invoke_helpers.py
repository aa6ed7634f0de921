"""Given/when/then helpers for the invoke tests: open a session, invoke, read evidence."""

from __future__ import annotations

from prometheus_client import REGISTRY

from mcp.models import Invocation
from mcp.receipts import receipt_verify
from sessions_app.services import session_create

RUN = "run-inv"


def session_token(*, run_id: str = RUN, scopes=("mcp:invoke",), servers=None, ttl_seconds=None) -> str:
    _, token = session_create(run_id=run_id, scopes=list(scopes), servers=servers, ttl_seconds=ttl_seconds, created_by="test")
    return token


def invoke(client, token: str | None, *, run_id: str = RUN, body=None, raw: bytes | None = None, content_type="application/json", **fields):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    payload = raw if raw is not None else __import__("json").dumps(body if body is not None else fields)
    return client.post(f"/api/maestro/v1/runs/{run_id}/mcp/invoke", payload, content_type=content_type, **headers)


def error_code(response) -> str:
    return response.json()["error"]["code"]


def receipt_of(response) -> dict:
    receipt = response["x-ig-policy-receipt"]
    claims, valid = receipt_verify(receipt=receipt)
    assert valid, "the receipt's signature must verify"
    return claims


def evidence(run_id: str = RUN) -> list[Invocation]:
    return list(Invocation.objects.filter(run_id=run_id).order_by("seq"))


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
