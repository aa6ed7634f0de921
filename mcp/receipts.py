"""Signed policy receipts: a compact, self-verifying record of one policy decision.

Format: `mr1.<base64url(canonical JSON claims)>.<base64url(HMAC-SHA256(key, "mr1." + payload))>`.
The key is POLICY_RECEIPT_SECRET, or one derived from SESSION_SECRET, so a receipt can be checked
offline (`manage.py mcp_receipt verify`) by anyone holding the key, and cannot be forged without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from mcp.canonical import canonical_json

PREFIX = "mr1"


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str
    engine: str  # "builtin" | "opa"
    policy: str  # which rule set decided, e.g. "builtin/v1" or "opa:maestro/mcp/allow"
    code: str = ""  # the error code a deny maps to, e.g. "scope_missing"
    decision_id: str | None = None  # OPA's decision_id, for correlating with its decision log


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: bytes, key: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def receipt_issue(*, decision: Decision, input_digest: str, run_id: str, sid: str, server: str, tool: str) -> str:
    claims = {
        "rid": uuid.uuid4().hex,
        "decision": "allow" if decision.allow else "deny",
        "reason": decision.reason,
        "engine": decision.engine,
        "policy": decision.policy,
        "input": input_digest,
        "run": run_id,
        "sid": sid,
        "server": server,
        "tool": tool,
        "iat": int(time.time()),
    }
    if decision.decision_id:
        claims["decision_id"] = decision.decision_id
    payload = _b64(canonical_json(claims))
    signing_input = f"{PREFIX}.{payload}".encode()
    return f"{PREFIX}.{payload}.{_b64(_sign(signing_input, settings.POLICY_RECEIPT_KEY))}"


def receipt_verify(*, receipt: str, key: bytes | None = None) -> tuple[dict | None, bool]:
    """(claims, signature_valid). Claims are None when the receipt cannot even be decoded."""
    parts = receipt.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None, False
    try:
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError):
        return None, False
    if not isinstance(claims, dict):
        return None, False
    expected = _sign(f"{PREFIX}.{parts[1]}".encode(), key or settings.POLICY_RECEIPT_KEY)
    return claims, hmac.compare_digest(expected, signature)
