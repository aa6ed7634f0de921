"""Names across servers: what the endpoint lists, and how a name a client sends maps back.

- Tools and prompts are named `{server}__{name}` (two underscores). A session whose server list
  names exactly one server is transparent: names (and resource URIs) are the upstream's own.
- The spec asks tool names of at most 128 characters from `A-Z a-z 0-9 _ - .`. A combined name
  longer than 128, or one already taken by an earlier entry of the same list (server `a__b`'s
  tool `c` and server `a`'s tool `b__c` would both be `a__b__c`), becomes
  `{server}__{start of name}-{8 hex of SHA-256(server, name)}`, cut to 128: deterministic, so
  the same registry always yields the same names. Entries are taken in list order (servers by
  name, each server's items in its own order), so the first keeps the plain name.
- Names are never split to find the server: a name maps back through the table built for the
  listing, so a server name that contains `__` is no ambiguity.
- Resource URIs become `maestro://{server}/{upstream URI}` (the upstream URI verbatim after the
  first `/`), and templates the same way, so a client expands a template as it would the
  upstream's and the gateway strips the prefix.
- Cursors are opaque to clients: `{list}:{offset}` in base64url, checked on the way back
  (a cursor that is not one of ours is an invalid-params error, as the pagination page says).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

SEPARATOR = "__"
MAX_NAME = 128
URI_SCHEME = "maestro://"


def _short(server: str, name: str) -> str:
    suffix = "-" + hashlib.sha256(f"{server}\0{name}".encode()).hexdigest()[:8]
    return (f"{server}{SEPARATOR}{name}"[: MAX_NAME - len(suffix)]) + suffix


@dataclass
class NameTable:
    """Listed name -> (server name, upstream name), for one list of one session."""

    transparent: bool
    back: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, server: str, name: str) -> str:
        if self.transparent:
            self.back.setdefault(name, (server, name))
            return name
        listed = f"{server}{SEPARATOR}{name}"
        if len(listed) > MAX_NAME or listed in self.back:
            listed = _short(server, name)
        self.back.setdefault(listed, (server, name))
        return listed

    def resolve(self, listed: str) -> tuple[str, str] | None:
        return self.back.get(listed)


def resource_uri(server: str, uri: str, *, transparent: bool) -> str:
    return uri if transparent else f"{URI_SCHEME}{server}/{uri}"


def resource_back(listed: str, *, transparent_server: str | None) -> tuple[str, str] | None:
    """(server name, upstream URI) of a URI the endpoint handed out, or None when it is not one."""
    if transparent_server is not None:
        return transparent_server, listed
    if not listed.startswith(URI_SCHEME):
        return None
    server, slash, uri = listed[len(URI_SCHEME):].partition("/")
    if not server or not slash or not uri:
        return None
    return server, uri


def cursor_encode(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode().rstrip("=")


def cursor_decode(kind: str, cursor: object) -> int | None:
    """The offset of a cursor this endpoint issued for `kind`, or None."""
    if not isinstance(cursor, str) or len(cursor) > 64:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, offset = text.partition(":")
    if prefix != kind or not offset.isdigit() or len(offset) > 9:
        return None
    return int(offset)
