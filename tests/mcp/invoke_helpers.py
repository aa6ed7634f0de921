"""Given/when/then helpers for the invoke tests: open a session, invoke, read evidence."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY

from maestro import bridge
from mcp.models import Invocation
from mcp.receipts import receipt_verify
from sessions_app.services import session_create

RUN = "run-inv"


def open_session(*, run_id: str = RUN, scopes=("mcp:invoke",), servers=None, ttl_seconds=None, created_by: str = "test"):
    """(record, token) of a new session, opened through the service as the data plane does."""
    return bridge.run(session_create(run_id=run_id, scopes=list(scopes), servers=servers, ttl_seconds=ttl_seconds, created_by=created_by))


def session_token(**kwargs) -> str:
    return open_session(**kwargs)[1]


def invoke(client, token: str | None, *, run_id: str = RUN, body=None, raw: bytes | None = None, content_type="application/json",
           headers: dict | None = None, **fields):
    sent = {"content-type": content_type} if content_type else {}
    if token:
        sent["authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    payload = raw if raw is not None else json.dumps(body if body is not None else fields)
    return client.post(f"/api/maestro/v1/runs/{run_id}/mcp/invoke", content=payload, headers=sent)


def tools(client, token: str | None, *, run_id: str = RUN):
    return client.get(f"/api/maestro/v1/runs/{run_id}/mcp/tools", headers={"authorization": f"Bearer {token}"} if token else {})


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


@pytest.fixture
def client(gateway):
    """The web door as deployed (the data plane in front of Django), in this process."""
    return gateway
