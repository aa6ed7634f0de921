"""Operator API keys: create, verify, list, revoke.

Keys look like `mcpk_<prefix>_<secret>`. The prefix finds the row; the SHA-256 digest of the
whole key is compared in constant time. Verified keys are remembered in-process for a few seconds
so operator calls do not each cost a query; a revocation therefore takes effect within
`_VERIFY_CACHE_SECONDS` on every worker.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from maestro import errors
from sessions_app import scopes as S
from sessions_app.models import ApiKey
from sessions_app.principals import Operator

_KEY_RE = re.compile(r"^mcpk_([0-9a-f]{12})_([A-Za-z0-9_-]{32,64})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERIFY_CACHE_SECONDS = 2.0
_LAST_USED_RESOLUTION = timedelta(minutes=1)

_cache: dict[str, tuple[float, Operator]] = {}
_cache_lock = threading.Lock()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _validate_scopes(scopes: list[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s.strip()})
    if not cleaned:
        raise errors.InvalidInput("scopes: at least one scope is required", code="invalid_scopes")
    unknown = [s for s in cleaned if s not in S.OPERATOR_SCOPES]
    if unknown:
        raise errors.InvalidInput(f"scopes: unknown scope {unknown[0]!r}; known: {', '.join(sorted(S.OPERATOR_SCOPES))}", code="invalid_scopes")
    return cleaned


def apikey_create(*, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Returns the row and the plaintext key, which is never stored and cannot be shown again."""
    if not _NAME_RE.match(name or ""):
        raise errors.InvalidInput("name: use 1-64 letters, digits, '.', '_' or '-'", code="invalid_name")
    cleaned = _validate_scopes(scopes)
    prefix = secrets.token_hex(6)
    key = f"mcpk_{prefix}_{secrets.token_urlsafe(32)}"
    try:
        with transaction.atomic():
            row = ApiKey.objects.create(name=name, prefix=prefix, digest=_digest(key), scopes=cleaned)
    except IntegrityError:
        raise errors.Conflict(f"an API key named {name!r} already exists", code="duplicate_name") from None
    return row, key


def apikey_revoke(*, name: str) -> ApiKey:
    row = ApiKey.objects.filter(name=name).first()
    if row is None:
        raise errors.NotFound(f"no API key named {name!r}", code="apikey_not_found")
    if not row.revoked:
        row.revoked, row.revoked_at = True, timezone.now()
        row.save(update_fields=["revoked", "revoked_at"])
    with _cache_lock:
        _cache.clear()
    return row


def _remembered(key: str) -> Operator | None:
    if not _KEY_RE.match(key or ""):
        raise errors.Unauthenticated("invalid API key", code="invalid_api_key")
    cached = _cache.get(_digest(key))
    return cached[1] if cached and cached[0] > time.monotonic() else None


async def apikey_verify_async(*, key: str) -> Operator:
    """`apikey_verify` for the data plane: from memory when it can, else the query off the loop."""
    from maestro import adb

    return _remembered(key) or await adb.orm(apikey_verify, key=key)


def apikey_verify(*, key: str) -> Operator:
    """The operator behind a key, or `Unauthenticated` for a malformed, unknown or revoked one."""
    remembered = _remembered(key)
    if remembered is not None:
        return remembered
    match = _KEY_RE.match(key)
    digest = _digest(key)
    now = time.monotonic()
    row = ApiKey.objects.filter(prefix=match.group(1)).first()
    if row is None or not hmac.compare_digest(row.digest, digest) or row.revoked:
        raise errors.Unauthenticated("invalid or revoked API key", code="invalid_api_key")
    operator = Operator(name=f"apikey:{row.name}", scopes=frozenset(row.scopes), api_key_id=row.pk)
    stamp = timezone.now()
    if row.last_used_at is None or stamp - row.last_used_at > _LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=row.pk).update(last_used_at=stamp)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now + _VERIFY_CACHE_SECONDS, operator)
    return operator
