"""`/mcp/registry`: the servers, their health and tools, and the operator's actions on them.
Reads for every operator; actions (POST, CSRF-checked) need `admin:mcp` or the ADMIN role."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_http_methods

from maestro.errors import GatewayError, InvalidInput
from mcp import selectors
from mcp.models import TAG_RE, McpServer
from mcp.pages.access import failure, operator_page, page
from mcp.services import registry
from mcp.templatetags.pages import health_words
from sessions_app import scopes as S

PAGE_SIZE = 25
HEALTH = [choice for choice, _ in McpServer.Health.choices]
FLAGS = {"": None, "true": True, "false": False}
ACTIONS = ("check-health", "refresh-tools", "enable", "disable")
CONFIRM = {"disable"}  # destructive: a GET shows what will happen, the POST does it


def _filters(params) -> dict:
    search, tag, health, enabled = (params.get(name, "").strip() for name in ("q", "tag", "health", "enabled"))
    if len(search) > 64:
        raise InvalidInput("q: at most 64 characters", details={"field": "q"})
    if tag and not TAG_RE.fullmatch(tag):
        raise InvalidInput("tag: not a valid tag", details={"field": "tag"})
    if health and health not in HEALTH:
        raise InvalidInput(f"health: one of {', '.join(HEALTH)}", details={"field": "health"})
    if enabled not in FLAGS:
        raise InvalidInput("enabled: true or false", details={"field": "enabled"})
    return {"q": search, "tag": tag, "health": health, "enabled": enabled}


@require_GET
@operator_page()
def server_list(request):
    chosen = _filters(request.GET)
    servers = registry.server_list(
        search=chosen["q"] or None, tag=chosen["tag"] or None, health=chosen["health"] or None, enabled=FLAGS[chosen["enabled"]],
    )
    listing = Paginator(selectors.server_rows(servers), PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({name: value for name, value in chosen.items() if value})
    return page(request, "registry/list.html", {
        "listing": listing, "filters": chosen, "tags": selectors.server_tags(), "health_choices": HEALTH, "query": query,
        "poll_ids": [str(server.pk) for server in listing],
    })


@require_GET
@operator_page(json=True)
def health_poll(request):
    """The health of the servers on screen, for the list's badges to refresh without a reload."""
    ids = []
    for value in request.GET.getlist("id")[:PAGE_SIZE * 4]:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    rows = selectors.server_health(ids=ids)
    return JsonResponse({"servers": [
        {"id": str(row["id"]), **health_words(
            status=row["health_status"], latency_ms=row["health_latency_ms"], checked_at=row["health_checked_at"], error=row["health_error"],
        )}
        for row in rows
    ]})


@require_GET
@operator_page()
def server_detail(request, ref: str):
    server = registry.server_get(ref=ref)
    tools = [tool for tool in (server.tools_cache or []) if isinstance(tool, dict) and isinstance(tool.get("name"), str)]
    blocked = sorted({tool["name"] for tool in tools if not registry.tool_allowed(server=server, tool_name=tool["name"])})
    return page(request, "registry/detail.html", {
        "server": server, "tools": tools, "blocked": blocked, "calls": selectors.server_recent_calls(server=server),
    })


@require_http_methods(["GET", "POST"])
@operator_page(S.ADMIN)
def server_action(request, ref: str, action: str):
    server = registry.server_get(ref=ref)
    if action not in ACTIONS or (request.method == "GET" and action not in CONFIRM):
        return failure(request, "not_found", f"no action {action!r}", 404)
    if request.method == "GET":
        return page(request, "registry/confirm.html", {"server": server, "action": action})
    level, text = _perform(server, action)
    messages.add_message(request, level, text)
    return redirect("pages-server", ref=server.name)


def _perform(server: McpServer, action: str) -> tuple[int, str]:
    if action == "check-health":
        result = registry.server_health_check(server=server)
        if result["status"] == "healthy":
            return messages.SUCCESS, f"{server.name} is healthy ({result['latency_ms']:.0f} ms, protocol {result['protocol_version']})."
        return messages.ERROR, f"{server.name} is {result['status']}: {result['error']['message']}"
    if action == "refresh-tools":
        try:
            tools = registry.server_tools_list(server=server, refresh=True)
        except GatewayError as exc:
            return messages.ERROR, f"Could not list the tools of {server.name}: {exc.message}"
        return messages.SUCCESS, f"{server.name} lists {len(tools)} tools."
    registry.server_enable(server=server, enabled=action == "enable")
    if action == "enable":
        return messages.SUCCESS, f"{server.name} is enabled: runs may call its tools again."
    return messages.WARNING, f"{server.name} is disabled: calls to it are refused (503 server_disabled) until it is enabled."
