"""The web door's application in this process, for tests: requests go through maestro.asgi's ASGI
app (the data plane in front, Django behind it on a2wsgi's threads), driven on the bridge's event
loop. What the data plane writes goes through its own connections, so tests that use it need
`transactional_db` (the `gateway` fixture asks for it).

`gateway.post(path, json=..., headers=...)` and friends return an httpx.Response that also answers
`response["Header-Name"]`, like Django's test client, so assertions read the same.
"""

from __future__ import annotations

import json as jsonlib

import httpx

from maestro import bridge


class Response(httpx.Response):
    def __getitem__(self, name: str) -> str:
        return self.headers[name]


class GatewayClient:
    def __init__(self, *, host: str = "127.0.0.1:8000", app=None):
        from maestro.asgi import application

        self.app = app or application
        self.host = host
        self.default_headers: dict[str, str] = {}

    def credentials(self, **headers: str) -> None:
        """Headers sent with every request (`credentials(x_api_key=KEY)`)."""
        self.default_headers = {name.replace("_", "-"): value for name, value in headers.items()}

    def request(self, method: str, path: str, *, json=None, content: bytes | str | None = None, headers: dict | None = None,
                params: dict | None = None, timeout: float = 60.0) -> Response:
        all_headers = {"host": self.host, **self.default_headers, **(headers or {})}
        if json is not None:
            content = jsonlib.dumps(json)
            all_headers.setdefault("content-type", "application/json")

        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=f"http://{self.host}") as client:
                return await client.request(method, path, content=content, headers=all_headers, params=params, timeout=timeout)

        answer = bridge.run(send())
        response = Response(answer.status_code, headers=answer.headers, content=answer.content, request=answer.request)
        return response

    # DRF's APIClient spelling too (`post(path, body, format="json")`), so helpers serve both.
    def get(self, path: str, data: dict | None = None, **kwargs) -> Response:
        return self.request("GET", path, params=data, **kwargs)

    def post(self, path: str, data=None, format: str | None = None, **kwargs) -> Response:
        if data is not None:
            kwargs["json"] = data
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs) -> Response:
        return self.request("DELETE", path, **kwargs)


def fresh_application():
    """The web door's application built anew, for a test that changed settings it reads at start
    (MAESTRO_MCP_ENABLED): what a restart with those settings would serve."""
    from a2wsgi import WSGIMiddleware
    from django.core.handlers.wsgi import WSGIHandler

    from mcp.dataplane.app import DataPlane

    return DataPlane(WSGIMiddleware(WSGIHandler(), workers=4))


def start_data_plane(*, watch: bool = False) -> None:
    """What the web door's lifespan does at start, on the bridge's loop (the revocation watch only
    when asked: without it every check asks Redis, which most tests want to observe)."""
    from mcp.dataplane.lifecycle import data_plane_start

    bridge.run(data_plane_start(serve=watch))


def stop_data_plane() -> None:
    """Close the loop's pools and clients (the test database cannot be dropped while a pooled
    connection is open on it)."""
    from mcp.dataplane.lifecycle import data_plane_stop

    bridge.run(data_plane_stop())
