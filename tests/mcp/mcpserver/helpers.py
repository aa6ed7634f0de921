"""Given/when/then helpers for the MCP endpoint's tests: requests in both protocol families against
the web door (in this process, or a real one), and what comes back (JSON or an event stream)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tests.mcp.invoke_helpers import RUN

MODERN = "2026-07-28"
SESSION_VERSION = "2025-11-25"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
ACCEPT_BOTH = "application/json, text/event-stream"


def mcp_path(run_id: str = RUN) -> str:
    return f"/api/maestro/v1/runs/{run_id}/mcp"


def messages_of(response) -> list[dict]:
    """The JSON-RPC messages of an answer: the JSON body, or every `data:` event of a stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        found = []
        for event in response.text.split("\n\n"):
            data = [line[5:].strip() for line in event.splitlines() if line.startswith("data:")]
            if data:
                found.append(json.loads("\n".join(data)))
        return found
    return [response.json()]


def answer_of(response) -> dict:
    """The JSON-RPC response (the last message) of an answer."""
    return [m for m in messages_of(response) if "result" in m or "error" in m][-1]


def modern_request(client, token: str | None, method: str, params: dict | None = None, *, run_id: str = RUN, request_id=1,
                   headers: dict | None = None, meta: dict | None = None):
    """A 2026-07-28 request with the envelope and headers a conforming client sends."""
    params = dict(params or {})
    params["_meta"] = {META_VERSION: MODERN, META_CAPABILITIES: {}, **(meta or {})}
    sent = {"content-type": "application/json", "accept": ACCEPT_BOTH, "mcp-protocol-version": MODERN, "mcp-method": method}
    if method in NAME_PARAM:
        sent["mcp-name"] = str(params.get(NAME_PARAM[method]))
    if token:
        sent["authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return client.post(mcp_path(run_id), content=json.dumps(body), headers={k: v for k, v in sent.items() if v is not None})


@dataclass
class LegacySession:
    """A session-revision client: initialize, then requests carrying Mcp-Session-Id."""

    client: object
    token: str
    run_id: str = RUN
    version: str = SESSION_VERSION
    session_id: str = ""
    next_id: int = 1
    initialized: dict = field(default_factory=dict)

    def headers(self, **extra) -> dict:
        sent = {"content-type": "application/json", "accept": ACCEPT_BOTH, "authorization": f"Bearer {self.token}"}
        if self.session_id:
            sent.update({"mcp-session-id": self.session_id, "mcp-protocol-version": self.version})
        sent.update(extra)
        return {name: value for name, value in sent.items() if value is not None}

    def initialize(self):
        response = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": self.version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        self.initialized = response.json()["result"]
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    def post(self, body, **headers):
        return self.client.post(mcp_path(self.run_id), content=json.dumps(body), headers=self.headers(**headers))

    def request(self, method: str, params: dict | None = None, **headers):
        self.next_id += 1
        return self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}, **headers)
