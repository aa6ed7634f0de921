"""Who may see and do what on the pages: signed out, a login with no operator role, a read-only
operator, a sessions operator, an admin; CSRF on every POST; the kill switch."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from tests.mcp.evidence_rows import write_chain
from tests.mcp.pages.helpers import PASSWORD, action_buttons, operator, server, session, text

pytestmark = pytest.mark.django_db
RUN = "run-pages"

PAGES = ["/mcp/registry", "/mcp/registry/files", "/studio/runs", f"/studio/runs/{RUN}", f"/studio/runs/{RUN}/evidence/1"]
POLLS = ["/mcp/registry/_health", f"/studio/runs/{RUN}/live"]


@pytest.fixture
def world():
    server("files")
    record, _ = session(RUN)
    write_chain(RUN, 3)
    return record


def posts(world) -> list[str]:
    return [
        "/mcp/registry/files/check-health", "/mcp/registry/files/refresh-tools", "/mcp/registry/files/disable",
        "/mcp/registry/files/enable", f"/studio/runs/{RUN}/sessions/{world.sid}/revoke", f"/studio/runs/{RUN}/verify",
    ]


@pytest.mark.parametrize("path", PAGES)
def test_signed_out_visits_go_to_the_sign_in_page(client, world, path):
    response = client.get(path)
    target = urlsplit(response["Location"])
    assert response.status_code == 302 and target.path == "/login" and parse_qs(target.query) == {"next": [path]}


@pytest.mark.parametrize("path", POLLS)
def test_signed_out_polls_are_a_json_401(client, world, path):
    response = client.get(path)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_signing_in_leads_back_to_the_page_asked_for(client, django_user_model, world):
    operator(django_user_model, "oncall", groups=("mcp:read",))
    response = client.post("/login", {"username": "oncall", "password": PASSWORD, "next": f"/studio/runs/{RUN}"})
    assert response.status_code == 302 and response["Location"] == f"/studio/runs/{RUN}"
    assert client.get(f"/studio/runs/{RUN}").status_code == 200


def test_a_wrong_password_or_an_account_without_a_role_cannot_sign_in(client, django_user_model):
    operator(django_user_model, "oncall", groups=("mcp:read",))
    operator(django_user_model, "marketing", groups=("marketing",))
    wrong = client.post("/login", {"username": "oncall", "password": "nope"})
    assert wrong.status_code == 200 and "Please enter a correct username and password" in text(wrong)
    roleless = client.post("/login", {"username": "marketing", "password": PASSWORD})
    assert roleless.status_code == 200 and "This account has no operator role" in text(roleless)
    assert client.get("/mcp/registry").status_code == 302, "still signed out"


def test_a_login_without_an_operator_role_gets_403_pages(client, django_user_model, world):
    client.force_login(operator(django_user_model, "marketing", groups=("marketing",)))
    response = client.get("/mcp/registry")
    assert response.status_code == 403 and "no operator role" in text(response)


def test_signing_out_is_a_post(client, django_user_model):
    client.force_login(operator(django_user_model, staff=True))
    response = client.post("/logout")
    assert response.status_code == 302 and response["Location"] == "/login"
    assert client.get("/mcp/registry").status_code == 302


@pytest.mark.parametrize("path", PAGES)
def test_a_read_only_operator_reads_every_page_and_sees_no_action(client, django_user_model, world, path):
    client.force_login(operator(django_user_model, groups=("mcp:read",)))
    response = client.get(path)
    assert response.status_code == 200
    assert action_buttons(response) == []
    assert not re.search(rb'<form method="post" action="/(mcp|studio)/', response.content), "no action form at all"


def test_a_read_only_operator_gets_403_on_every_action(client, django_user_model, world):
    client.force_login(operator(django_user_model, groups=("mcp:read",)))
    for path in posts(world):
        response = client.post(path)
        assert response.status_code == 403, path
        assert "This needs the scope" in text(response)
    assert client.get("/mcp/registry/files/disable").status_code == 403, "not even the confirmation"
    assert client.get(f"/studio/runs/{RUN}/sessions/{world.sid}/revoke").status_code == 403


def test_a_sessions_operator_may_revoke_but_not_touch_the_registry(client, django_user_model, world):
    client.force_login(operator(django_user_model, groups=("mcp:sessions",)))
    assert "Revoke…" in action_buttons(client.get(f"/studio/runs/{RUN}"))
    assert action_buttons(client.get("/mcp/registry/files")) == []
    assert client.post("/mcp/registry/files/disable").status_code == 403
    assert client.post(f"/studio/runs/{RUN}/sessions/{world.sid}/revoke").status_code == 302


def test_an_admin_sees_every_action(client, django_user_model, world):
    client.force_login(operator(django_user_model, staff=True))
    assert action_buttons(client.get("/mcp/registry/files")) == ["Check health now", "Refresh tools", "Disable…"]
    assert action_buttons(client.get(f"/studio/runs/{RUN}")) == ["Revoke…", "Re-verify from #1"]
    assert action_buttons(client.get("/mcp/registry")) == ["Register a server (admin form)"]


def test_an_admin_mcp_group_acts_on_the_registry_but_is_not_sent_to_the_admin_site(client, django_user_model, world):
    client.force_login(operator(django_user_model, groups=("admin:mcp",)))
    page = client.get("/mcp/registry/files")
    assert "Check health now" in action_buttons(page) and "Edit in admin" not in text(page)


def test_every_post_needs_the_csrf_token(django_user_model, world):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator(django_user_model, staff=True))
    for path in posts(world):
        assert browser.post(path).status_code == 403, path
    # With the token the page itself carries, the same POST goes through.
    page = browser.get("/mcp/registry/files/disable")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    assert browser.post("/mcp/registry/files/disable", {"csrfmiddlewaretoken": token}).status_code == 302


def test_the_sign_in_form_needs_the_csrf_token(django_user_model):
    operator(django_user_model, "oncall", groups=("mcp:read",))
    assert Client(enforce_csrf_checks=True).post("/login", {"username": "oncall", "password": PASSWORD}).status_code == 403


@pytest.mark.parametrize("path", ["/login", "/", *PAGES, *POLLS])
def test_the_kill_switch_removes_the_pages(client, django_user_model, world, mcp_disabled, path):
    client.force_login(operator(django_user_model, staff=True))
    response = client.get(path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_database_failure_is_a_503_page_not_a_500(client, django_user_model, monkeypatch):
    from django.db import OperationalError

    from mcp.services import registry

    client.force_login(operator(django_user_model, staff=True))

    def down(**_):
        raise OperationalError("connection refused")

    monkeypatch.setattr(registry, "server_list", down)
    response = client.get("/mcp/registry")
    assert response.status_code == 503 and "Temporarily unavailable" in text(response)
