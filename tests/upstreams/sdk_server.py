"""An upstream MCP server written with the official MCP SDK, for the gateway's tests.

Run it as a subprocess, outside the project root and with `python -P`, so `import mcp` finds the
SDK and not the project's own `mcp` app (see DESIGN section 2):

    python -P tests/upstreams/sdk_server.py --port 8123 --mode stateful --response sse

It uses the SDK's low-level `Server` (not `MCPServer`) because the tests need a paginated
`tools/list`, a JSON-RPC error from a handler and the request's session id, which the high-level
server hides. A thin ASGI wrapper around the SDK app adds what the tests observe or vary:

- `GET /stats` answers how many requests of each JSON-RPC method (and DELETEs) the server saw, so a
  test can prove that the gateway did not repeat a handshake;
- `--family legacy` makes the server behave like a pre-2026 server: it refuses the 2026-07-28
  envelope the way older servers do (400 "Server not initialized", or 200 "Method not found");
- `--legacy-version` makes the server settle an `initialize` on an older revision (2025-03-26) by
  rewriting the version the client offered, as a server that only knows that revision would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

import mcp

if "site-packages" not in (mcp.__file__ or ""):
    sys.exit(f"sdk_server: `import mcp` found {mcp.__file__}, not the SDK: run with python -P outside the project root")

import mcp_types as types  # noqa: E402
import uvicorn  # noqa: E402
from mcp.server.lowlevel.server import Server  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

MODERN = "2026-07-28"


def build_tools(extra: int) -> list[types.Tool]:
    def tool(name: str, description: str, properties: dict, required: list[str] | None = None) -> types.Tool:
        schema = {"type": "object", "properties": properties, "required": required or []}
        return types.Tool(name=name, description=description, input_schema=schema)

    tools = [
        tool("echo", "Echo the text back.", {"text": {"type": "string"}}, ["text"]),
        tool("add", "Add two numbers.", {"a": {"type": "number"}, "b": {"type": "number"}}, ["a", "b"]),
        tool("sleep", "Sleep, then answer.", {"seconds": {"type": "number"}}, ["seconds"]),
        tool("whoami", "The upstream MCP session this call arrived on.", {}),
        tool("fail", "A tool error (isError), which is a result.", {}),
        tool("boom", "A JSON-RPC error from the handler.", {}),
        tool("big", "A text of n bytes.", {"n": {"type": "integer"}}, ["n"]),
        tool("progress", "Report progress three times, then answer (an SSE server streams it).", {}),
        # 2026-07-28 servers check that an x-mcp-header argument is mirrored in an Mcp-Param header.
        tool("region", "Echo the region.", {"region": {"type": "string", "x-mcp-header": "Region"}}, ["region"]),
    ]
    tools += [tool(f"extra_{i:02d}", f"Filler tool {i} for pagination.", {}) for i in range(extra)]
    return tools


def text(value: str, *, is_error: bool = False, structured: dict | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=value)], is_error=is_error, structured_content=structured)


RESOURCES = {"memo://readme": "Read me first.", "memo://notes/today": "Nothing planned."}


def make_server(name: str, page_size: int, extra: int, growable: bool = False) -> Server:
    tools = build_tools(extra)
    if growable:
        # `grow` adds a tool to the list: an upstream whose tool list changes while it runs.
        tools.append(types.Tool(name="grow", description="Add a tool to this server's list.", input_schema={"type": "object", "properties": {}}))

    async def list_tools(ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        start = int(params.cursor) if params is not None and params.cursor else 0
        page = tools[start : start + page_size]
        more = start + page_size < len(tools)
        return types.ListToolsResult(tools=page, next_cursor=str(start + page_size) if more else None)

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        if params.name == "echo":
            return text(str(args.get("text", "")))
        if params.name == "add":
            total = args["a"] + args["b"]
            return text(str(total), structured={"sum": total})
        if params.name == "sleep":
            await asyncio.sleep(float(args["seconds"]))
            return text("slept")
        if params.name == "whoami":
            request = ctx.request
            session = request.headers.get("mcp-session-id") if request is not None else None
            return text(session or "", structured={"session": session, "protocol": ctx.protocol_version})
        if params.name == "fail":
            return text("the tool failed", is_error=True)
        if params.name == "boom":
            raise MCPError(-32050, "boom happened")
        if params.name == "big":
            return text("x" * int(args["n"]))
        if params.name == "progress":
            for step in range(3):
                await ctx.session.send_progress_notification("gw", step + 1, total=3, related_request_id=ctx.request_id)
            return text("done")
        if params.name == "region":
            return text(str(args.get("region")))
        if params.name.startswith("extra_") or params.name.startswith("grown_"):
            return text(params.name)
        if params.name == "grow":
            added = f"grown_{len(tools):02d}"
            tools.append(types.Tool(name=added, description="A tool added while the server ran.", input_schema={"type": "object", "properties": {}}))
            # Said on this request's stream (an SSE server), where a client relaying the call hears it
            await ctx.session.send_notification(types.ToolListChangedNotification(), related_request_id=ctx.request_id)
            return text(added)
        raise MCPError(-32602, f"unknown tool {params.name}")

    async def list_resources(ctx, params) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(uri=uri, name=uri.rsplit("/", 1)[1], mime_type="text/plain") for uri in RESOURCES])

    async def list_templates(ctx, params) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(uri_template="memo://notes/{day}", name="notes")])

    async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        if params.uri not in RESOURCES:
            raise MCPError(-32602, f"unknown resource {params.uri}")
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=params.uri, text=RESOURCES[params.uri], mime_type="text/plain")])

    async def list_prompts(ctx, params) -> types.ListPromptsResult:
        argument = types.PromptArgument(name="who", description="Whom to greet.", required=True)
        return types.ListPromptsResult(prompts=[types.Prompt(name="greet", description="A greeting.", arguments=[argument])])

    async def get_prompt(ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        if params.name != "greet":
            raise MCPError(-32602, f"unknown prompt {params.name}")
        who = (params.arguments or {}).get("who", "nobody")
        return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=types.TextContent(text=f"Hello, {who}!"))])

    return Server(
        name, version="9.9.9", on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
        on_list_resource_templates=list_templates, on_read_resource=read_resource, on_list_prompts=list_prompts, on_get_prompt=get_prompt,
    )


class Wrapper:
    """ASGI wrapper: counts methods, serves /stats, and restricts the protocol family."""

    def __init__(self, app, *, family: str, legacy_reject: int, legacy_version: str | None):
        self.app = app
        self.family = family
        self.legacy_reject = legacy_reject
        self.legacy_version = legacy_version
        self.counts: Counter[str] = Counter()
        self.last_call: dict = {}  # trace context the last tools/call carried (header and _meta)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/stats":
            return await self._json(send, 200, dict(self.counts))
        if scope["path"] == "/last-call":
            return await self._json(send, 200, self.last_call)
        if scope["method"] == "DELETE":
            self.counts["DELETE"] += 1
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        method = decoded.get("method") if isinstance(decoded, dict) else None
        self.counts[method or "?"] += 1
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if method == "tools/call":
            meta = (decoded.get("params") or {}).get("_meta") or {}
            self.last_call = {"traceparent_header": headers.get("traceparent"), "traceparent_meta": meta.get("traceparent")}
        if self.family == "legacy" and (headers.get("mcp-protocol-version") == MODERN or method == "server/discover"):
            if self.legacy_reject == 400:
                error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "Bad Request: Server not initialized"}}
                return await self._json(send, 400, error)
            error = {"jsonrpc": "2.0", "id": decoded.get("id"), "error": {"code": -32601, "message": "Method not found"}}
            return await self._json(send, 200, error)
        if method == "initialize" and self.legacy_version:
            decoded["params"]["protocolVersion"] = self.legacy_version
            body = json.dumps(decoded).encode()
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"])
            scope["headers"].append((b"content-length", str(len(body)).encode()))
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    async def _json(send, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["stateless", "stateful"], default="stateless")
    parser.add_argument("--response", choices=["json", "sse"], default="json")
    parser.add_argument("--family", choices=["both", "legacy"], default="both")
    parser.add_argument("--legacy-reject", type=int, choices=[200, 400], default=400)
    parser.add_argument("--legacy-version", default=None)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--extra-tools", type=int, default=0)
    parser.add_argument("--name", default="sdk-test-server")
    parser.add_argument("--backlog", type=int, default=2048, help="listen backlog (bench: thousands of connections at once)")
    parser.add_argument("--growable", action="store_true", help="add the `grow` tool, which adds a tool to the list")
    args = parser.parse_args()

    server = make_server(args.name, args.page_size, args.extra_tools, args.growable)
    app = server.streamable_http_app(stateless_http=args.mode == "stateless", json_response=args.response == "json")
    wrapped = Wrapper(app, family=args.family, legacy_reject=args.legacy_reject, legacy_version=args.legacy_version)

    async def asgi(scope, receive, send):
        # Starlette's lifespan (which starts the SDK's session manager) must reach the inner app.
        await wrapped(scope, receive, send)

    uvicorn.run(asgi, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on", backlog=args.backlog)


if __name__ == "__main__":
    main()
