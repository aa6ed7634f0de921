"""The destination policy (SSRF guard): every spelling and range, at registration (API and admin)
and at connection time after DNS, through the real upstream client against a loopback server."""

from __future__ import annotations

import asyncio
import socket

import pytest

from maestro import bridge
from mcp.models import McpServer
from mcp.upstream import destinations as D
from mcp.upstream.client import get_client
from tests.conftest import make_key
from tests.mcp.helpers import SERVERS, SyncClient, spec_for, stats

ALWAYS_REFUSED = [
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "169.254.0.1",
    "fe80::1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "2852039166", "0xa9fea9fe",
    "0251.0376.0251.0376", "169.254.43518", "metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "metadata.goog",
    "metadata", "instance-data",
]
# Not public: refused unless MCP_UPSTREAM_ALLOW_PRIVATE or MCP_UPSTREAM_ALLOWED_CIDRS allows them.
NOT_PUBLIC = {
    "127.0.0.1": "loopback", "2130706433": "loopback", "0x7f000001": "loopback", "017700000001": "loopback",
    "127.1": "loopback", "0177.0.0.1": "loopback", "0x7f.1": "loopback", "127.0.0.1.": "loopback", "::1": "loopback",
    "::ffff:127.0.0.1": "loopback", "::ffff:7f00:1": "loopback", "localhost": "loopback",
    "10.1.2.3": "private", "172.16.0.1": "private", "172.31.255.255": "private", "192.168.1.1": "private",
    "100.64.0.1": "private", "fc00::1": "private", "fd12:3456::1": "private", "::ffff:10.0.0.1": "private",
    "0.0.0.0": "unspecified", "0": "unspecified", "::": "unspecified",
    "224.0.0.1": "multicast", "ff02::1": "multicast",
    "240.0.0.1": "reserved", "255.255.255.255": "reserved", "192.0.2.1": "reserved", "2001:db8::1": "reserved",
    "198.18.0.1": "reserved",
}
PUBLIC = ["8.8.8.8", "134744072", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
MALFORMED = ["4294967296", "0x1ffffffff", "1.2.3.256", "08", "0x", "1.2.65536"]


@pytest.fixture
def strict(settings):
    """The production default: no private addresses, no allow-list. The policy is checked when a
    connection opens, and settings never change in a running gateway, so the data plane's pool
    forgets the loopback connections earlier tests left idle under the test default."""
    settings.MCP_UPSTREAM_ALLOW_PRIVATE = False
    settings.MCP_UPSTREAM_ALLOWED_CIDRS = []
    _forget_pooled_connections()
    return settings


def _forget_pooled_connections() -> None:
    async def forget() -> None:
        client = get_client.forget()
        if client is not None:
            await client.close()

    bridge.run(forget())


@pytest.fixture
def dns(monkeypatch):
    """Names resolve to whatever the test says (a list per name; each look-up takes the next)."""
    answers: dict[str, list[list[str]]] = {}
    real = D._getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        ips = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]

    async def afake(host, port):
        return fake(host, port)

    monkeypatch.setattr(D, "_getaddrinfo", fake)
    monkeypatch.setattr(D, "_agetaddrinfo", afake)  # the upstream client resolves on its event loop
    return answers


def refused(host: str, port: int = 80) -> str:
    with pytest.raises(D.DestinationRefused) as caught:
        D.resolve_checked(host, port)
    assert caught.value.code == "upstream_destination_refused"
    return caught.value.message


# --- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ALWAYS_REFUSED)
def test_metadata_and_link_local_are_refused_whatever_is_allowed(settings, host):
    settings.MCP_UPSTREAM_ALLOW_PRIVATE = True
    settings.MCP_UPSTREAM_ALLOWED_CIDRS = ["0.0.0.0/0", "::/0"]
    assert "never allowed" in refused(host)


@pytest.mark.parametrize(("host", "kind"), NOT_PUBLIC.items())
def test_non_public_addresses_are_refused_by_default(strict, host, kind):
    message = refused(host)
    assert f"a {kind} address" in message and "MCP_UPSTREAM_ALLOW_PRIVATE" in message


@pytest.mark.parametrize("host", NOT_PUBLIC)
def test_allow_private_lets_every_non_public_address_through(strict, host):
    strict.MCP_UPSTREAM_ALLOW_PRIVATE = True
    assert D.resolve_checked(host, 80)


@pytest.mark.parametrize(("host", "cidrs", "allowed"), [
    ("10.1.2.3", ["10.0.0.0/8"], True),
    ("10.1.2.3", ["192.168.0.0/16", "fc00::/7"], False),
    ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),
    ("2130706433", ["127.0.0.0/8"], True),
    ("fd12:3456::1", ["fd12::/16"], True),
    ("fd12:3456::1", ["10.0.0.0/8"], False),
])
def test_the_allow_list_allows_exactly_its_networks(strict, host, cidrs, allowed):
    strict.MCP_UPSTREAM_ALLOWED_CIDRS = cidrs
    if allowed:
        assert D.resolve_checked(host, 80)
    else:
        refused(host)


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_allowed(strict, host):
    assert [D.address_class(ip) for ip in D.resolve_checked(host, 443)] == ["public"]


@pytest.mark.parametrize(("spelling", "meant"), [
    ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("017700000001", "127.0.0.1"), ("127.1", "127.0.0.1"),
    ("0177.0.0.01", "127.0.0.1"), ("10.0x10203", "10.1.2.3"), ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
])
def test_numeric_spellings_are_the_address_they_mean(spelling, meant):
    assert str(D.host_address(spelling)) == meant


@pytest.mark.parametrize("host", MALFORMED)
def test_a_numeric_host_that_is_no_address_is_refused_as_malformed(settings, host):
    settings.MCP_UPSTREAM_ALLOW_PRIVATE = True
    assert "malformed" in refused(host)


def test_port_zero_is_refused(settings):
    settings.MCP_UPSTREAM_ALLOW_PRIVATE = True
    assert "port 0" in refused("8.8.8.8", 0)
    with pytest.raises(D.DestinationRefused):
        D.destination_check_url("http://8.8.8.8:0/mcp")


def test_a_name_is_judged_by_every_address_it_resolves_to(strict, dns):
    dns["round-robin.test"] = [["8.8.8.8", "10.0.0.7"]]
    assert "'round-robin.test' (10.0.0.7) is a private address" in refused("round-robin.test")
    dns["all-public.test"] = [["8.8.8.8", "2606:4700:4700::1111"]]
    assert [str(ip) for ip in D.resolve_checked("all-public.test", 80)] == ["8.8.8.8", "2606:4700:4700::1111"]


def test_a_name_resolving_to_metadata_is_refused_at_registration(strict, dns):
    dns["innocent.example"] = [["169.254.169.254"]]
    with pytest.raises(D.DestinationRefused, match="cloud metadata"):
        D.destination_check_url("https://innocent.example/mcp")


def test_a_name_that_does_not_resolve_is_left_to_connection_time(strict, dns):
    dns["nowhere.test"] = [[]]
    assert D.destination_check_url("https://nowhere.test/mcp") is None
    with pytest.raises(socket.gaierror):
        D.resolve_checked("nowhere.test", 443)


def test_the_async_resolver_applies_the_same_policy(strict, monkeypatch):
    async def fake(host, port):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ({"good.test": "8.8.4.4", "bad.test": "192.168.0.9"}[host], port))]

    monkeypatch.setattr(D, "_agetaddrinfo", fake)
    assert [str(ip) for ip in asyncio.run(D.aresolve_checked("good.test", 443))] == ["8.8.4.4"]
    with pytest.raises(D.DestinationRefused, match="private"):
        asyncio.run(D.aresolve_checked("bad.test", 443))
    with pytest.raises(D.DestinationRefused, match="loopback"):
        asyncio.run(D.aresolve_checked("0x7f000001", 443))


def test_the_async_resolver_resolves_for_real(settings):
    settings.MCP_UPSTREAM_ALLOWED_CIDRS = ["127.0.0.0/8", "::1/128"]
    assert "127.0.0.1" in [str(ip) for ip in asyncio.run(D.aresolve_checked("localhost", 80))]


# --- registration -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.5/mcp", "http://localhost:5432/", "http://2130706433:8000/mcp", "http://0x7f000001/mcp", "http://127.1/mcp",
    "http://[::1]:8080/mcp", "http://0.0.0.0:80/", "http://8.8.8.8:0/mcp", "http://4294967296/mcp",
])
def test_registering_a_refused_url_is_a_400_naming_the_url(admin_api, strict, url):
    response = admin_api.post(SERVERS, {"name": "target", "url": url}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["details"]["field"]) == ("invalid_request", "url")
    assert error["message"].startswith("url: ")
    assert not McpServer.objects.exists()


@pytest.mark.django_db
def test_moving_a_server_to_a_refused_url_is_a_400_and_a_public_one_is_fine(admin_api, strict):
    created = admin_api.post(SERVERS, {"name": "s", "url": "https://8.8.8.8/mcp"}, format="json")
    assert created.status_code == 201, created.content
    moved = admin_api.patch(f"{SERVERS}/s", {"url": "http://192.168.0.1/mcp"}, format="json")
    assert moved.status_code == 400 and moved.json()["error"]["details"]["field"] == "url"
    assert McpServer.objects.get(name="s").url == "https://8.8.8.8/mcp"
    assert admin_api.patch(f"{SERVERS}/s", {"enabled": False}, format="json").status_code == 200


@pytest.mark.django_db
def test_the_admin_form_shows_a_refused_url_on_the_url_field(admin_client, strict):
    from tests.mcp.test_registry_admin import CHANGELIST, add_form

    response = admin_client.post(f"{CHANGELIST}add/", add_form(url="http://169.254.169.254/latest/"))
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert "url" in errors and "cloud metadata" in errors["url"][0]
    assert not McpServer.objects.exists()


# --- connection time: after DNS, through the real client --------------------------------------


def test_the_client_connects_to_a_loopback_upstream_only_while_loopback_is_allowed(sdk, settings):
    upstream = sdk.modern_json
    url = upstream.url().replace("127.0.0.1", "localhost")
    settings.MCP_UPSTREAM_ALLOWED_CIDRS = ["127.0.0.0/8", "::1/128"]
    assert SyncClient().probe(server=spec_for(url), timeout_s=5).protocol_version
    # When the allow-list is off, the same name is refused after resolution, before anything is sent
    settings.MCP_UPSTREAM_ALLOWED_CIDRS = []
    settings.MCP_UPSTREAM_ALLOW_PRIVATE = False
    before = stats(upstream)
    with pytest.raises(D.DestinationRefused, match="'localhost' \\(127.0.0.1\\) is a loopback address"):
        SyncClient().probe(server=spec_for(url), timeout_s=5)
    assert stats(upstream) == before, "no request reached the upstream"


@pytest.mark.django_db
def test_a_name_rebound_to_loopback_after_registration_is_refused_on_connection(api, admin_api, strict, dns, sdk):
    # Given a server registered while its name resolved to a public address
    dns["rebind.test"] = [["93.184.215.14"], ["127.0.0.1"]]
    url = f"http://rebind.test:{sdk.modern_json.port}/mcp"
    assert admin_api.post(SERVERS, {"name": "rebinder", "url": url}, format="json").status_code == 201
    # When the name now resolves to loopback and a read-only operator asks for a health probe
    api.credentials(HTTP_X_API_KEY=make_key(["mcp:read"]))
    before = stats(sdk.modern_json)
    response = api.get(f"{SERVERS}/rebinder/health")
    # Then the probe is refused cleanly, reports why, and nothing reached the loopback server
    body = response.json()
    assert response.status_code == 503, body
    assert body["status"] == "unreachable" and body["error"]["code"] == "upstream_destination_refused"
    assert "loopback" in body["error"]["message"]
    assert stats(sdk.modern_json) == before
    tools = api.get(f"{SERVERS}/rebinder/tools")
    assert tools.status_code == 502 and tools.json()["error"]["code"] == "upstream_destination_refused"


@pytest.mark.django_db
def test_a_server_stored_before_the_policy_is_refused_when_probed(api, strict, sdk):
    # Given a row that points at loopback (stored when loopback was allowed)
    McpServer.objects.create(name="legacy", url=sdk.modern_json.url())
    api.credentials(HTTP_X_API_KEY=make_key(["mcp:read"]))
    response = api.get(f"{SERVERS}/legacy/health")
    assert response.status_code == 503 and response.json()["error"]["code"] == "upstream_destination_refused"
