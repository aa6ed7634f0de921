"""Given/when/then helpers for the invoke tests: open a session, invoke, read evidence."""

from __future__ import annotations

import pytest
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


class FastPathResponse:
    """What the invoke tests read from a response, for an answer of the WSGI fast path."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes):
        self.status_code = int(status.split()[0])
        self.headers = {name.lower(): value for name, value in headers}
        self.content = body

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def json(self):
        return __import__("json").loads(self.content)


class FastPathClient:
    """Sends requests through maestro.wsgi's InvokeFastPath in front of Django, in this thread (so
    inside the test's transaction). Like Django's own test client, it keeps the request signals from
    closing the test's database connection; everything else is the deployed WSGI stack."""

    def __init__(self, django_client):
        from django.core.handlers.wsgi import WSGIHandler

        from mcp.api.invoke_wsgi import InvokeFastPath

        self.app = InvokeFastPath(WSGIHandler())
        self.django_client = django_client
        self.posted = self.claimed = 0

    def post(self, path: str, data, content_type: str = "application/json", **extra) -> FastPathResponse:
        import io

        body = data.encode() if isinstance(data, str) else data
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1:8000", "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(), "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", **extra,
        }
        self.posted += 1
        if self.app._claim(environ) is not None:
            self.claimed += 1
        return self.call(environ)

    def call(self, environ) -> FastPathResponse:
        from django.core import signals
        from django.db import close_old_connections

        started: list = []
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            chunks = self.app(environ, lambda status, headers, exc_info=None: started.append((status, headers)))
            body = b"".join(chunks)
            getattr(chunks, "close", lambda: None)()
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)
        return FastPathResponse(started[0][0], started[0][1], body)

    def get(self, *args, **kwargs):
        return self.django_client.get(*args, **kwargs)


@pytest.fixture(params=["django", "fast-path"])
def client(request, client):
    """Every invoke test runs through both HTTP doors: Django's view and the WSGI fast path."""
    if request.param == "django":
        yield client
        return
    fast = FastPathClient(client)
    yield fast
    assert fast.claimed == fast.posted, "the fast path must have served every invoke request of this test"
