"""Encryption at rest for upstream auth headers (AES-256-GCM).

The key is derived from `settings.MCP_SECRETS_KEY` for this one purpose. The server's id is the
associated data, so a ciphertext copied onto another server's row does not decrypt: stealing a
row's secret by pointing a server you control at it needs the key, not just database writes.
Format: "v1:" + urlsafe base64 of (12-byte nonce + ciphertext and tag).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from maestro.errors import Unavailable

PREFIX = "v1:"


def _key() -> bytes:
    return hmac.new(settings.MCP_SECRETS_KEY, b"maestro-mcp/upstream-headers/aes-gcm/v1", hashlib.sha256).digest()


def encrypt_headers(headers: dict[str, str], *, server_id: str) -> str:
    if not headers:
        return ""
    nonce = os.urandom(12)
    plaintext = json.dumps(headers, separators=(",", ":"), sort_keys=True).encode()
    sealed = AESGCM(_key()).encrypt(nonce, plaintext, _aad(server_id))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt_headers(token: str, *, server_id: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        if not token.startswith(PREFIX):
            raise ValueError("unknown format")
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :].encode("ascii"))
        plaintext = AESGCM(_key()).decrypt(raw[:12], raw[12:], _aad(server_id))
        headers = json.loads(plaintext)
    except (InvalidTag, ValueError, TypeError):
        # Most likely MCP_SECRETS_KEY (or SESSION_SECRET it derives from) changed since the write.
        raise Unavailable(
            "the upstream auth headers of this server cannot be decrypted (was MCP_SECRETS_KEY changed?): set them again",
            code="secrets_unreadable",
        ) from None
    return {str(k): str(v) for k, v in headers.items()}


def _aad(server_id) -> bytes:
    return f"mcp-server:{server_id}".encode()
