"""Where the gateway may connect: the destination policy for upstream MCP servers (the SSRF guard).

An operator registers a URL and anyone allowed to probe or invoke makes the gateway connect to
it, so a URL must not turn the gateway into a way into the network it runs in. The policy:

- always refused: cloud metadata services (169.254.169.254 and its names, fd00:ec2::254,
  100.100.100.200, 168.63.129.16, ...) and link-local addresses (169.254.0.0/16, fe80::/10), and
  port 0;
- refused unless `MCP_UPSTREAM_ALLOW_PRIVATE=true`, or unless the address is inside one of
  `MCP_UPSTREAM_ALLOWED_CIDRS`: every other address that is not public: loopback, private
  (RFC 1918), CGNAT (100.64.0.0/10), unique-local (fc00::/7), unspecified, multicast, reserved
  and documentation ranges;
- allowed: public addresses.

IPv4 written the ways `inet_aton` reads it (`2130706433`, `0x7f000001`, `017700000001`, `127.1`)
is the address it means; IPv4 inside IPv6 (`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
`2002::/16`) is judged as the IPv4 address. A name is resolved and *every* address it resolves
to must pass; a connection is then made to one of exactly those addresses (no second look-up),
so a name that resolves somewhere else later (DNS rebinding) is caught at connection time.

Two moments use it: registration (`destination_check_url`, a clear 400 naming the URL) and every
new upstream connection (`resolve_checked` / `aresolve_checked`, and `connect_checked` for the
http.client pool), after resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

from maestro.errors import UpstreamFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.internal", "metadata.tencentyun.com", "metadata.platformequinix.com",
})
METADATA_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
    "169.254.170.2/32",  # AWS ECS task metadata
    "fd00:ec2::254/128",  # AWS IMDS over IPv6
    "100.100.100.200/32",  # Alibaba Cloud
    "168.63.129.16/32",  # Azure WireServer (a public address, reachable only from inside Azure)
))
LINK_LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Every spelling inet_aton accepts: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x).
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)


class DestinationRefused(UpstreamFailed):
    """The destination policy refuses this URL or address; nothing was sent to it."""

    code = "upstream_destination_refused"


# --- classification ---------------------------------------------------------------------------


def host_address(host: str) -> IPAddress | None:
    """The IP address a URL host spells (any inet_aton form, IPv6 with or without brackets), or
    None for a host name. A host that looks numeric but is no address is refused as malformed."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(bare.rstrip(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare.rstrip(".")))
        except OSError:
            raise DestinationRefused(f"the host {host!r} is a malformed IPv4 address") from None
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_class(ip: IPAddress) -> str:
    """"metadata", "link-local" (always refused), "loopback", "private", "unspecified", "multicast",
    "reserved" (refused unless allowed), or "public"."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return address_class(inner)
    if any(ip in net for net in METADATA_NETWORKS):
        return "metadata"
    if any(ip in net for net in LINK_LOCAL_NETWORKS):
        return "link-local"
    if ip.is_loopback:
        return "loopback"
    if any(ip in net for net in PRIVATE_NETWORKS):
        return "private"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "reserved"
    return "public"


ALWAYS_REFUSED = frozenset({"metadata", "link-local"})


@lru_cache(maxsize=8)
def _allowed_networks(cidrs: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def check_address(ip: IPAddress, *, host: str | None = None) -> None:
    """None if the policy lets the gateway connect to `ip`, else DestinationRefused."""
    kind = address_class(ip)
    shown = f"{host!r} ({ip})" if host and host.strip("[]") != str(ip) else str(ip)
    if kind in ALWAYS_REFUSED:
        what = "a cloud metadata address" if kind == "metadata" else "a link-local address"
        raise DestinationRefused(f"the upstream {shown} is {what}, which is never allowed")
    if kind == "public" or settings.MCP_UPSTREAM_ALLOW_PRIVATE:
        return
    inner = _embedded_ipv4(ip) or ip
    if any(inner in net or ip in net for net in _allowed_networks(tuple(settings.MCP_UPSTREAM_ALLOWED_CIDRS))):
        return
    raise DestinationRefused(
        f"the upstream {shown} is a {kind} address; set MCP_UPSTREAM_ALLOW_PRIVATE=true or list its network "
        "in MCP_UPSTREAM_ALLOWED_CIDRS to allow it"
    )


def _check_name(host: str) -> None:
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise DestinationRefused(f"the upstream {host!r} is a cloud metadata service, which is never allowed")


def _check_port(port: int | None) -> None:
    if port is not None and not 0 < port < 65536:
        raise DestinationRefused(f"port {port} is not a destination")


# --- resolution -------------------------------------------------------------------------------

# Indirections, so tests can make a name resolve wherever they need (rebinding) without DNS.
_getaddrinfo = socket.getaddrinfo


async def _agetaddrinfo(host: str, port: int):
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _addresses(infos) -> list[IPAddress]:
    seen: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(sockaddr[0])
            if ip not in seen:
                seen.append(ip)
    return seen


def _checked(host: str, addresses: list[IPAddress]) -> list[IPAddress]:
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    for ip in addresses:  # every one: a round-robin name with one bad address is refused whole
        check_address(ip, host=host)
    return addresses


def _checked_without_resolving(host: str, port: int) -> list[IPAddress] | None:
    """What needs no DNS, for both resolvers below: the port, a literal address (then the answer
    itself), a metadata name. None when the name must be resolved."""
    _check_port(port)
    literal = host_address(host)
    if literal is not None:
        check_address(literal, host=host)
        return [literal]
    _check_name(host)
    return None


def resolve_checked(host: str, port: int) -> list[IPAddress]:
    """The addresses to connect to for (host, port), all allowed by the policy, in resolver order.
    DestinationRefused when any is refused; socket.gaierror when the name does not resolve."""
    known = _checked_without_resolving(host, port)
    return known if known is not None else _checked(host, _addresses(_getaddrinfo(host, port, type=socket.SOCK_STREAM)))


async def aresolve_checked(host: str, port: int) -> list[IPAddress]:
    """resolve_checked for the asyncio client: resolution on the loop's resolver. Connect to one of
    the returned addresses (with `server_hostname=host` for TLS), never to `host` again."""
    known = _checked_without_resolving(host, port)
    return known if known is not None else _checked(host, _addresses(await _agetaddrinfo(host, port)))


def destination_check_url(url: str) -> None:
    """For registration: None when the gateway may connect to `url` today, else DestinationRefused
    with a message naming the host and why. A name that does not resolve (yet) is not refused here;
    every connection is checked again after resolution."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise DestinationRefused("the URL's port is not a number from 1 to 65535") from None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    try:
        resolve_checked(host, port)
    except OSError:  # does not resolve now: connection time decides
        return
