"""Session tokens: HS256 JWTs that carry everything a door needs to authorise a call.

Only HS256 is accepted, whatever the token's header says: `none`, HS512, RS256 (the "public key
used as HMAC secret" confusion) and every other algorithm fail before any key is tried. Issuing
and verifying are done here, not by PyJWT (see `verify` for why; tests check PyJWT agrees with
both). Tokens are signed with SESSION_SECRET; SESSION_SECRET_PREVIOUS are tried, in order, only
when the current secret's signature does not match, so rotating the secret does not cut off live
runs and costs nothing while no rotation is under way.

This module knows nothing of revocation or of runs; `sessions_app.verify.session_authenticate`
adds both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from maestro import errors

ALGORITHM = "HS256"
_REQUIRED = ("sid", "run", "scopes", "iat", "exp", "iss", "aud")
MAX_TOKEN_CHARS = 8192
# The header every token we issue carries (PyJWT's encoding of it): recognised without parsing.
_KNOWN_HEADER = {"alg": ALGORITHM, "typ": "JWT"}
_KNOWN_HEADER_SEGMENT = base64.urlsafe_b64encode(json.dumps(_KNOWN_HEADER, separators=(",", ":")).encode()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """A verified token. Times are Unix seconds (the token's own `iat` and `exp`)."""

    sid: str
    run_id: str
    scopes: frozenset[str]
    servers: tuple[str, ...]  # server ids; empty means any registered server
    issued_at: int
    expires_at: int

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def allows_server(self, server_id: str) -> bool:
        return not self.servers or server_id in self.servers


def issue(*, sid: str, run_id: str, scopes: list[str], servers: list[str], issued_at: int, expires_at: int) -> str:
    payload = {
        "sid": sid,
        "run": run_id,
        "scopes": scopes,
        "servers": servers,
        "iat": issued_at,
        "exp": expires_at,
        "iss": settings.SESSION_TOKEN_ISSUER,
        "aud": settings.SESSION_TOKEN_AUDIENCE,
    }
    # Signed here rather than with jwt.encode, for the reason `verify` gives: PyJWT spends about
    # 0.4 ms per token preparing the key, most of a session creation's budget. The same bytes
    # PyJWT would write (tests/sessions_app/test_tokens.py decodes them with PyJWT).
    signing_input = f"{_KNOWN_HEADER_SEGMENT}.{_b64encode(json.dumps(payload, separators=(',', ':')).encode())}"
    mac = _mac(settings.SESSION_SECRET).copy()
    mac.update(signing_input.encode())
    return f"{signing_input}.{_b64encode(mac.digest())}"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unauthenticated(code: str, message: str) -> errors.Unauthenticated:
    return errors.Unauthenticated(message, code=code)


_B64URL_INDEX = {ch: i for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
# The last character of a segment whose length is 2 or 3 mod 4 carries 4 or 2 bits no byte uses;
# canonical base64url leaves them zero (a length of 1 mod 4 is never valid).
_SPARE_BITS_MASK = {0: 0, 2: 0b1111, 3: 0b11}


def _b64decode(segment: str) -> bytes:
    """Strict base64url without padding, in its one canonical spelling: characters outside the
    alphabet, `=` padding, or spare bits that are not zero (a second spelling of the same bytes)
    are errors. One token, one spelling: a token cannot be replayed under another string."""
    mask = _SPARE_BITS_MASK.get(len(segment) % 4)
    if mask is None or "=" in segment or (mask and _B64URL_INDEX.get(segment[-1], 0) & mask):
        raise ValueError("not canonical base64url")
    return base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)


@lru_cache(maxsize=8)
def _mac(key: bytes):
    """A keyed HMAC-SHA256 state per secret; copying it skips the key schedule on every check."""
    return hmac.new(key, digestmod=hashlib.sha256)


# 9999-12-31T23:59:59Z: the largest time a datetime holds. A signed token may still carry NaN,
# Infinity, 1e400 or 10**30 (a bug in an older issuer); none of them is a time.
_MAX_TIME = 253_402_300_799


def _time(value) -> bool:
    """A Unix time: an int or a finite float in [0, _MAX_TIME] (NaN fails every comparison)."""
    return type(value) in (int, float) and 0 <= value <= _MAX_TIME


def verify(token: str) -> SessionClaims:
    """The token's claims, or `Unauthenticated` with a precise code. No I/O.

    Verified by hand rather than with `jwt.decode`: PyJWT 2.15 spends ~0.1 ms per token on
    generic checks (key-format sniffing, per-character segment scans), half the whole budget of a
    check. The rules are the same, and stricter where it matters: the header's `alg` must be
    exactly "HS256" before any key is tried; the signature is compared in constant time; the
    payload is parsed only after the signature verifies.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise _unauthenticated("malformed_token", "the session token is malformed")
    head, body, sig = token.split(".")
    try:
        header = _KNOWN_HEADER if head == _KNOWN_HEADER_SEGMENT else json.loads(_b64decode(head))
        signature = _b64decode(sig)
        raw_payload = _b64decode(body)
    except (ValueError, binascii.Error):
        raise _unauthenticated("malformed_token", "the session token is malformed") from None
    if not isinstance(header, dict):
        raise _unauthenticated("malformed_token", "the session token is malformed")
    if header.get("alg") != ALGORITHM:
        raise _unauthenticated("invalid_token", "the session token is not signed with HS256")
    signing_input = f"{head}.{body}".encode()
    for key in (settings.SESSION_SECRET, *settings.SESSION_SECRET_PREVIOUS):
        mac = _mac(key).copy()
        mac.update(signing_input)
        if hmac.compare_digest(mac.digest(), signature):
            break
    else:
        raise _unauthenticated("invalid_signature", "the session token's signature does not verify")
    try:
        payload = json.loads(raw_payload)
    except ValueError:
        raise _unauthenticated("malformed_token", "the session token is malformed") from None
    if not isinstance(payload, dict):
        raise _unauthenticated("malformed_token", "the session token is malformed")
    return _claims(_check_registered_claims(payload))


def _check_registered_claims(payload: dict) -> dict:
    """exp / iat / nbf / iss / aud, with PyJWT's semantics (leeway on both sides)."""
    missing = [name for name in _REQUIRED if name not in payload]
    if missing:
        raise _unauthenticated("invalid_token", f"the session token lacks the {missing[0]!r} claim")
    exp, iat = payload["exp"], payload["iat"]
    if not _time(exp) or not _time(iat) or ("nbf" in payload and not _time(payload["nbf"])):
        raise _unauthenticated("invalid_token", "the session token's times are not numbers")
    now = time.time()
    leeway = settings.SESSION_TOKEN_LEEWAY_SECONDS
    if exp <= now - leeway:
        raise _unauthenticated("token_expired", "the session token has expired")
    if iat > now + leeway or payload.get("nbf", 0) > now + leeway:
        raise _unauthenticated("invalid_token", "the session token is not valid yet")
    if payload["iss"] != settings.SESSION_TOKEN_ISSUER:
        raise _unauthenticated("invalid_token", "the session token has the wrong issuer")
    aud = payload["aud"]
    audiences = aud if isinstance(aud, list) else [aud]
    if settings.SESSION_TOKEN_AUDIENCE not in audiences:
        raise _unauthenticated("invalid_token", "the session token is for another audience")
    return payload


def _claims(payload: dict) -> SessionClaims:
    sid, run, scopes, servers = payload["sid"], payload["run"], payload["scopes"], payload.get("servers", [])
    # The signature proves we issued it; these checks keep a bug in an older issuer from becoming
    # a crash (or a wrong decision) in every door.
    if not (
        isinstance(sid, str)
        and isinstance(run, str)
        and isinstance(scopes, list)
        and isinstance(servers, list)
        and all(isinstance(s, str) for s in scopes)
        and all(isinstance(s, str) for s in servers)
    ):
        raise _unauthenticated("invalid_token", "the session token's claims have the wrong types")
    return SessionClaims(
        sid=sid,
        run_id=run,
        scopes=frozenset(scopes),
        servers=tuple(servers),
        issued_at=int(payload["iat"]),
        expires_at=int(payload["exp"]),
    )
