"""The pages in a real browser (headless Chromium) against the gateway as deployed, on the test
PostgreSQL and Redis, with a real upstream MCP server: every scenario of the issue, no console
errors, a screenshot of each page under test-output/browser/."""

from __future__ import annotations

import secrets
import subprocess

import httpx
import pytest
from django.db import connection
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from tests.conftest import make_key
from tests.mcp.pages.browser import Browser
from tests.mcp.pages.helpers import PASSWORD, operator
from tests.support.processes import WebServer, project_env, run_manage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
API = "/api/maestro/v1"


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker):
    # One web door for the module (tables are emptied between tests; names and run ids are unique
    # per test, so nothing the server remembers in-process can leak from one test into the next).
    with WebServer(project_env(MCP_SESSIONS_PERSIST="true")) as web:
        yield web


@pytest.fixture(scope="module")
def browser():
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser):
    browser.console_errors()  # start each test with an empty console log
    try:
        yield browser
        errors = browser.console_errors()
        assert errors == [], f"the browser console logged errors: {errors}"
    finally:
        # Leave no page polling: its sign-in is about to be emptied with the tables.
        browser.open("about:blank")


class Gateway:
    """What a test does through the gateway's HTTP API, as an operator and as a run would."""

    def __init__(self, web: WebServer):
        self.web = web
        self.key = make_key(["admin:mcp"])
        self.http = httpx.Client(base_url=web.base_url, timeout=20, headers={"X-API-Key": self.key})

    def register(self, name: str, url: str) -> dict:
        answer = self.http.post(f"{API}/mcp/servers", json={"name": name, "url": url})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def open_session(self, run_id: str, **body) -> dict:
        answer = self.http.post(f"{API}/runs/{run_id}/mcp/sessions", json={"scopes": ["mcp:invoke"], **body})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def invoke(self, run_id: str, token: str, server: str, tool: str, **arguments) -> httpx.Response:
        return httpx.post(
            f"{self.web.base_url}{API}/runs/{run_id}/mcp/invoke", json={"server": server, "tool": tool, "arguments": arguments},
            headers={"Authorization": f"Bearer {token}"}, timeout=20,
        )


@pytest.fixture
def api(gateway):
    client = Gateway(gateway)
    yield client
    client.http.close()


@pytest.fixture
def admin(django_user_model):
    return operator(django_user_model, "admin", staff=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_sign_in_check_health_open_tools_and_disable(page, gateway, api, admin, sdk):
    # Given a registered upstream that has never been checked, and one that cannot be reached
    name, dead = unique("files"), unique("gone")
    api.register(name, sdk.modern_json.url())
    api.register(dead, "http://127.0.0.1:9/mcp")

    # When the operator visits the registry signed out, signs in, and lands on the table
    page.sign_in(gateway.base_url, "admin", PASSWORD)
    assert name in page.body() and dead in page.body()
    assert page.find(f'[data-health-id="{api_id(api, name)}"]').text == "unknown"
    page.screenshot("registry-signed-in")

    # Then a health result stored meanwhile shows on the table without a reload
    page.driver.execute_script("window.__notReloaded = true;")
    assert api.http.get(f"{API}/mcp/servers/{dead}/health").status_code == 503
    page.wait_text(f'[data-health-id="{api_id(api, dead)}"]', "unreachable")
    assert page.driver.execute_script("return window.__notReloaded === true;"), "the badge must refresh in place"
    page.screenshot("registry")

    # When they open the server and check its health now
    page.find(f'a[href="/mcp/registry/{name}"]').click()
    page.click_text("Check health now")
    page.wait_text(".messages", f"{name} is healthy")
    assert page.find(f'[data-health-id="{api_id(api, name)}"]').text == "healthy"

    # And refresh its tools and open one
    page.click_text("Refresh tools")
    page.wait_text(".messages", "lists 12 tools")
    page.find("#tool-echo summary").click()
    schema = page.find("#tool-echo pre.json")
    page.wait(lambda _: schema.is_displayed(), message="the input schema must unfold")
    assert '"text"' in schema.text and '"required"' in schema.text
    page.screenshot("registry-server")

    # And disable it, confirming first
    page.click_text("Disable…")
    page.wait_text("h1", f"Disable {name}?")
    page.screenshot("registry-disable-confirm")
    page.click_text(f"Disable {name}")
    page.wait_text(".messages", f"{name} is disabled")
    assert "Enable" in page.body()

    # Then a run's call to it is refused
    token = api.open_session(unique("run"), servers=[name])
    refused = api.invoke(token["run_id"], token["token"], name, "echo", text="hi")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_disabled"


def api_id(api: Gateway, name: str) -> str:
    return api.http.get(f"{API}/mcp/servers/{name}").json()["id"]


def test_calls_appear_on_the_studio_tab_and_a_revoked_session_is_refused(page, gateway, api, admin, sdk):
    # Given a run with a session on a real upstream
    name, run_id = unique("files"), unique("run")
    api.register(name, sdk.modern_json.url())
    session = api.open_session(run_id, servers=[name])
    assert api.invoke(run_id, session["token"], name, "echo", text="first").status_code == 200

    # When the operator opens the run's Tools & Evidence tab
    page.sign_in(gateway.base_url, "admin", PASSWORD, path=f"/studio/runs/{run_id}")
    assert page.find(".tabs [aria-current=page]").text == "Tools & Evidence"
    row = page.find(f'tr[data-sid="{session["sid"]}"]')
    assert session["sid"][:8] in row.text and "active" in row.text and name in row.text
    tools = page.find("details.server-tools").text
    assert name in tools and "12 of 12 tools callable" in tools
    page.wait_text("#chain-badge", "chain verified through #1")

    # And the run makes more calls, one of which fails and one the policy refuses
    assert api.invoke(run_id, session["token"], name, "echo", text="second").status_code == 200
    assert api.invoke(run_id, session["token"], name, "no_such_tool").status_code == 404
    assert api.invoke(run_id, session["token"], name, "add", a="x", b=1).status_code == 400

    # Then the tab notices them without a reload, and shows them when asked
    page.wait(lambda _: page.find("#new-calls").is_displayed(), message="new calls must be announced")
    assert page.find("#new-calls [data-count]").text == "3"
    page.find("#new-calls a").click()
    page.wait_text("#chain-badge", "chain verified through #4")
    seqs = [cell.text for cell in page.find_all("table.timeline tbody tr td:first-child")]
    assert seqs == ["#4", "#3", "#2", "#1"], "newest first"
    first = page.find("table.timeline tbody tr:last-child").text
    assert "echo" in first and "success" in first and "allow" in first
    page.screenshot("studio-run")

    # And the timeline filters by status
    Select(page.find("select[name=status]")).select_by_visible_text("error")
    page.find("form.filters button[type=submit]").click()
    page.wait(EC.url_contains("status=error"))
    statuses = [cell.text for cell in page.find_all("table.timeline tbody tr td:nth-child(6)")]
    assert statuses and all(s.startswith("error") for s in statuses), statuses

    # And one row's detail shows its decoded, verified receipt
    page.open(f"{gateway.base_url}/studio/runs/{run_id}/evidence/1")
    assert "signature valid" in page.body() and "matches its hash" in page.body()
    assert "allow" in page.find("dl.facts .decision-allow").text
    page.screenshot("studio-evidence-row")

    # When the operator revokes the session from the page
    page.open(f"{gateway.base_url}/studio/runs/{run_id}")
    page.click_text("Revoke…")
    page.click_text(f"Revoke {session['sid'][:8]}")
    page.wait_text(".messages", "is revoked")
    assert "revoked" in page.find(f'tr[data-sid="{session["sid"]}"]').text

    # Then the run's next call is refused
    refused = api.invoke(run_id, session["token"], name, "echo", text="after revoke")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "session_revoked"

    # And the run index lists the run with its calls and errors
    page.open(f"{gateway.base_url}/studio/runs")
    listed = next(row for row in page.find_all("tbody tr") if run_id in row.text)
    assert listed.text.split()[1:4] == ["4", "2", "0"], "4 calls, 2 errors (unknown tool, bad arguments), 0 denied"
    page.screenshot("studio-runs")


def test_tampering_shows_the_broken_chain_and_the_export_verifies_offline(page, gateway, api, admin, sdk):
    # Given a run with three calls, open on the Studio tab
    name, run_id = unique("files"), unique("run")
    api.register(name, sdk.modern_json.url())
    session = api.open_session(run_id, servers=[name])
    for n in range(3):
        assert api.invoke(run_id, session["token"], name, "echo", text=str(n)).status_code == 200
    page.sign_in(gateway.base_url, "admin", PASSWORD, path=f"/studio/runs/{run_id}")
    page.wait_text("#chain-badge", "chain verified through #3")

    # When the evidence is exported, then the file verifies offline
    page.click_text("Export JSONL")
    exported = page.downloaded(f"evidence-{run_id}.jsonl")
    verified = run_manage("mcp_evidence", "verify", "--file", str(exported))
    assert verified.returncode == 0 and "chain valid (3 rows" in verified.stdout, verified.stderr
    exported.unlink()

    # When someone rewrites a row in the database
    with connection.cursor() as cursor:
        cursor.execute("UPDATE mcp_invocations SET status = 'denied' WHERE run_id = %s AND seq = 2", [run_id])

    # Then the next look shows the chain broken at that row
    page.driver.refresh()
    page.wait_text("#chain-badge", "chain broken at #2")
    assert "broken-row" in page.find("table.timeline tbody tr:nth-child(2)").get_attribute("class")
    page.screenshot("studio-broken-chain")

    # And the export of the tampered chain fails offline verification at the same row
    page.click_text("Export JSONL")
    broken = run_manage("mcp_evidence", "verify", "--file", str(page.downloaded(f"evidence-{run_id}.jsonl")))
    assert broken.returncode == 1 and "BROKEN at seq 2" in broken.stderr


def test_pages_fit_a_phone_width(page, gateway, api, admin, sdk):
    name = unique("files")
    api.register(name, sdk.modern_json.url())
    page.sign_in(gateway.base_url, "admin", PASSWORD)
    page.driver.set_window_size(390, 844)
    try:
        for path in (f"/mcp/registry/{name}", "/mcp/registry", "/studio/runs"):
            page.open(gateway.base_url + path)
            sticking_out = page.driver.execute_script(
                "var width = document.documentElement.clientWidth;"
                "return Array.from(document.querySelectorAll('body *'))"
                "  .filter(function (e) { return e.getBoundingClientRect().right > width + 0.5 && !e.closest('.table-wrap'); })"
                "  .map(function (e) { return e.tagName + '.' + e.className; });"
            )
            assert sticking_out == [], f"{path}: nothing may reach past a phone's width (wide tables scroll in their box)"
        page.open(f"{gateway.base_url}/mcp/registry/{name}")
        page.screenshot("registry-server-phone", whole_page=False)
    finally:
        page.driver.set_window_size(1280, 900)


def test_every_action_is_reachable_from_the_keyboard(page, gateway, api, admin, sdk):
    name = unique("files")
    api.register(name, sdk.modern_json.url())
    page.sign_in(gateway.base_url, "admin", PASSWORD, path=f"/mcp/registry/{name}")
    reached = set()
    for _ in range(40):
        ActionChains(page.driver).send_keys(Keys.TAB).perform()
        reached.add(page.driver.switch_to.active_element.text.strip())
    assert {"Check health now", "Refresh tools", "Disable…", "Sign out"} <= reached, reached
