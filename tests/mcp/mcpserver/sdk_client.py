"""The official MCP SDK's client against the gateway's MCP endpoint, for the tests.

Run as a subprocess outside the project root with `python -P` (the project's `mcp` app shadows
the SDK, DESIGN section 2):

    python -P sdk_client.py --url URL --token TOKEN --mode legacy|2026-07-28 --tool NAME --resource URI --prompt NAME

It connects (initialize, or 2026-07-28 directly), lists tools, resources, templates and prompts,
calls the tool, reads the resource and gets the prompt, and prints one JSON line with what it saw.
At 2026-07-28 it then opens subscriptions/listen, prints `READY`, waits for
`notifications/tools/list_changed` (the test changes the registry meanwhile), lists the tools again
and prints a second JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import mcp

if "site-packages" not in (mcp.__file__ or ""):
    sys.exit(f"sdk_client: `import mcp` found {mcp.__file__}, not the SDK: run with python -P outside the project root")

import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

WAIT_S = 30.0


def emit(payload) -> None:
    print(json.dumps(payload), flush=True)


async def tool_names(client: Client) -> list[str]:
    return [tool.name for tool in (await client.list_tools()).tools]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--arguments", default='{"text": "through the gateway"}')
    parser.add_argument("--resource", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--prompt-arguments", default='{"who": "gateway"}')
    args = parser.parse_args()

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.token}"}, timeout=httpx2.Timeout(30.0, read=60.0))
    transport = streamable_http_client(args.url, http_client=http)
    async with Client(transport, mode=args.mode, cache=None) as client:
        call = await client.call_tool(args.tool, json.loads(args.arguments))
        read = await client.read_resource(args.resource)
        prompt = await client.get_prompt(args.prompt, json.loads(args.prompt_arguments))
        emit({
            "protocol": client.protocol_version,
            "server": client.server_info.name if client.server_info else None,
            "tools": await tool_names(client),
            "resources": [r.uri for r in (await client.list_resources()).resources],
            "templates": [t.uri_template for t in (await client.list_resource_templates()).resource_templates],
            "prompts": [p.name for p in (await client.list_prompts()).prompts],
            "call": call.model_dump(mode="json", by_alias=True, exclude_none=True),
            "read": read.model_dump(mode="json", by_alias=True, exclude_none=True),
            "prompt": prompt.model_dump(mode="json", by_alias=True, exclude_none=True),
        })
        if client.protocol_version != "2026-07-28":
            return  # see test_sdk_client.py: the session family's stream is tested without the SDK
        async with client.listen(tools_list_changed=True) as subscription:
            emit("READY")
            async with asyncio.timeout(WAIT_S):
                async for _event in subscription:
                    break
        emit({"changed": True, "tools": await tool_names(client)})


if __name__ == "__main__":
    asyncio.run(main())
