"""Given/when/then helpers for the page tests: operators with roles, servers, sessions."""

from __future__ import annotations

import html
import re

from django.contrib.auth.models import Group

from mcp.services import registry
from maestro import bridge
from sessions_app.services import session_create

PASSWORD = "pw-operator-12345"
BLOCK_TAGS = re.compile(r"</?(p|div|td|th|tr|li|ul|h\d|dt|dd|dl|section|br|option|summary|details|table|thead|tbody|header|nav|main|footer|form|label|select|pre|button|a)\b[^>]*>")
ACTION_LABELS = ("Check health now", "Refresh tools", "Disable…", "Enable", "Revoke…", "Re-verify from #1", "Register a server")


def operator(django_user_model, name: str = "oncall", *, staff: bool = False, groups: tuple[str, ...] = ()):
    """A Django login: staff (the ADMIN role) or a plain account in the given scope groups."""
    user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=staff)
    for group in groups:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def server(name: str = "files", url: str = "http://127.0.0.1:9/mcp", **fields):
    return registry.server_create(data={"name": name, "url": url, **fields})


def session(run_id: str, *, scopes=("mcp:invoke",), servers=None):
    record, token = bridge.run(session_create(run_id=run_id, scopes=list(scopes), servers=servers, created_by="test"))
    return record, token


def text(response) -> str:
    """The page's visible text, tags stripped, whitespace collapsed: what an operator reads."""
    body = response.content.decode()
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    body = re.sub(r"<p\b[^>]*\shidden\b[^>]*>.*?</p>", " ", body, flags=re.S)  # what the page hides is not read
    body = re.sub(BLOCK_TAGS, " ", body)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", body))).strip()


def buttons(response) -> list[str]:
    """The labels of the page's buttons and button-styled links, in page order."""
    found = re.findall(r'<button\b[^>]*>(.*?)</button>|<a\b[^>]*class="button[^"]*"[^>]*>(.*?)</a>', response.content.decode(), flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", first or second)).strip() for first, second in found]


def action_buttons(response) -> list[str]:
    """The buttons that change something (reading, filtering, exporting and signing out do not)."""
    return [label for label in buttons(response) if label.startswith(ACTION_LABELS)]
