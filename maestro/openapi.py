"""The OpenAPI 3 document of the whole HTTP API, served at /api/schema/ (Swagger UI at /api/docs/).

drf-spectacular describes the DRF views (registry, sessions, evidence, whoami) from their
serializers and `extend_schema` annotations; the routes that are not DRF views (health,
readiness, and the data plane: invoke and tools, answered by the invoke core rather than DRF) are
described here by hand, in the same document, by a postprocessing hook. The hook also gives every
operation the one error shape for every status it can answer, so the document is a contract a
client (and Schemathesis, in the test suite) can hold the gateway to.
"""

from __future__ import annotations

from copy import deepcopy

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from sessions_app.runs import RUN_ID_RE

API = "/api/maestro/v1"
RECEIPT_HEADER = "x-ig-policy-receipt"

ERROR_SCHEMA = {
    "type": "object",
    "description": "The one error shape of every route.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable, e.g. `token_expired`"},
                "message": {"type": "string", "description": "safe to show: never a secret or a stack trace"},
                "details": {"type": "object", "additionalProperties": True},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}

ERROR_MEANINGS = {
    "400": "bad input (names the field)", "401": "missing, invalid, expired or revoked credentials",
    "403": "scope, run, server or policy denied", "404": "unknown", "405": "method not allowed", "406": "not acceptable",
    "409": "conflict", "413": "body too large", "415": "send application/json", "429": "over a limit",
    "502": "the upstream MCP server failed", "503": "unavailable (database, Redis, policy engine, disabled server)",
    "504": "the upstream MCP server timed out",
}


def _error(status: str, extra: str = "") -> dict:
    return {
        "description": ERROR_MEANINGS.get(status, "error") + extra,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RUN_ID = {
    "name": "run_id", "in": "path", "required": True, "description": "the run: 1-128 of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit",
    "schema": {"type": "string", "pattern": f"^{RUN_ID_RE.pattern}$"}, "example": "run-42",
}
INVOKE_REQUEST = {
    "type": "object",
    "properties": {
        "server": {"type": "string", "description": "the server's name or id"},
        "tool": {"type": "string", "description": "the tool's name"},
        "arguments": {"type": "object", "additionalProperties": True, "nullable": True,
                      "description": "validated against the tool's inputSchema; null or absent: {}"},
        "timeout_ms": {"type": "integer", "minimum": 1, "nullable": True, "description": "at most the server's timeout_ms; null or absent: the server's"},
    },
    "required": ["server", "tool"],
    "additionalProperties": False,
    "example": {"server": "files", "tool": "echo", "arguments": {"text": "hello"}},
}
INVOKE_RESULT = {
    "type": "object",
    "properties": {
        "invocation_id": {"type": "string"},
        "server": {"type": "string"},
        "tool": {"type": "string"},
        "result": {"type": "object", "additionalProperties": True, "description": "the MCP CallToolResult as the upstream returned it"},
        "latency_ms": {"type": "number"},
        "evidence": {"type": "object", "properties": {"seq": {"type": "integer"}, "hash": {"type": "string"}}, "required": ["seq", "hash"]},
    },
    "required": ["invocation_id", "server", "tool", "result", "latency_ms", "evidence"],
}
RECEIPT = {
    RECEIPT_HEADER: {
        "description": "the signed policy receipt `mr1.<claims>.<signature>` (verify with `manage.py mcp_receipt verify`)",
        "schema": {"type": "string"},
    }
}
RUN_TOOLS = {
    "type": "object",
    "properties": {
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "server": {"type": "string"}, "server_id": {"type": "string"}, "name": {"type": "string"},
                    "description": {"type": "string"}, "inputSchema": {"type": "object", "additionalProperties": True},
                },
                "required": ["server", "server_id", "name"],
            },
        },
        "count": {"type": "integer"},
    },
    "required": ["tools", "count"],
}
CHECKS = {"type": "object", "additionalProperties": {"type": "object", "properties": {"status": {"type": "string", "enum": ["up", "down"]}, "error": {"type": "string"}}}}
READY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]}, "checks": CHECKS, "duration_ms": {"type": "number"},
        "failing": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["status", "checks"],
}

HAND_WRITTEN_PATHS = {
    "/api/health": {
        "get": {
            "operationId": "health", "tags": ["operations"], "summary": "Liveness: the process is up", "security": [],
            "responses": {"200": _json({"type": "object", "properties": {"status": {"type": "string", "enum": ["ok"]}}, "required": ["status"]}, "up")},
        }
    },
    "/api/ready": {
        "get": {
            "operationId": "ready", "tags": ["operations"], "summary": "Readiness: the database and Redis answer", "security": [],
            "responses": {"200": _json(READY, "ready"), "503": _json(READY, "a dependency is failing (named in `failing`)")},
        }
    },
    f"{API}/runs/{{run_id}}/mcp/invoke": {
        "post": {
            "operationId": "mcp_invoke", "tags": ["data plane"], "summary": "Call a tool with the run's session token",
            "description": "Checks, in order: token, run, body, in-flight limit, scopes, server, server list, server scopes, tool "
            "globs, tool, arguments, timeout, policy; then the upstream call and the evidence row. Every answer after a "
            f"policy decision carries `{RECEIPT_HEADER}`.",
            "parameters": [RUN_ID],
            "security": [{"sessionToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": INVOKE_REQUEST}}},
            "responses": {
                "200": {**_json(INVOKE_RESULT, "the tool's result (an `isError: true` result is a result too)"), "headers": RECEIPT},
                **{status: {**_error(status), "headers": RECEIPT} for status in ("400", "401", "403", "404", "413", "429", "502", "503", "504")},
            },
        }
    },
    f"{API}/runs/{{run_id}}/mcp/tools": {
        "get": {
            "operationId": "mcp_run_tools", "tags": ["data plane"], "summary": "The tools this session may call",
            "parameters": [RUN_ID],
            "security": [{"sessionToken": []}],
            "responses": {"200": _json(RUN_TOOLS, "the callable tools, across the session's servers"),
                          **{status: _error(status) for status in ("400", "401", "403", "502", "503", "504")}},
        }
    },
}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an operator API key (`manage.py mcp_apikey create`)"}


def _errors_for(path: str, method: str) -> list[str]:
    """The error statuses a DRF operation can answer, from what it takes and how it is guarded."""
    statuses = ["400", "401", "403"]  # every operator route: bad query/body/path, no or bad key, scope
    if "{" in path:
        statuses.append("404")
    if method in ("post", "put", "patch"):
        statuses += ["409", "413", "415"] if "/mcp/servers" in path else ["413", "415"]
    if path.endswith("/health") or path.endswith("/tools"):
        statuses += ["502", "503", "504"]
    if "/mcp/sessions" in path or "/evidence" in path:
        statuses.append("503")  # the session store (Redis) or the database is down
    return statuses


def postprocess(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: add the hand-written routes, the error shape and the bearer scheme."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["sessionToken"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "a run's session token, from POST /api/maestro/v1/runs/{run_id}/mcp/sessions",
    }
    paths = result.setdefault("paths", {})
    for path, operations in paths.items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status in _errors_for(path, method):
                operation["responses"].setdefault(status, _error(status))
            operation["responses"].setdefault("405", _error("405"))
            operation["responses"].setdefault("406", _error("406"))
    for path, operations in HAND_WRITTEN_PATHS.items():
        if path.startswith(API) and not any(p.startswith(API) for p in paths):
            continue  # MAESTRO_MCP_ENABLED=false: no MCP route, so none described
        paths[path] = deepcopy(operations)
    result["paths"] = dict(sorted(paths.items()))
    return result
