"""Small given/when/then helpers for the session tests."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
from django.conf import settings
from django.core.cache import caches
from prometheus_client import REGISTRY

from maestro import bridge, errors
from sessions_app.services import session_create
from sessions_app.verify import session_authenticate

RUN = "run-1"
OTHER_RUN = "run-2"
DROP = object()


def create(**kwargs):
    """(record, token) of a new session, through the service the data plane calls."""
    kwargs.setdefault("created_by", "test")
    return bridge.run(session_create(**kwargs))


def authenticate(*, token: str | None, run_id: str = RUN):
    return bridge.run(session_authenticate(token=token, run_id=run_id))


def outcome(token: str | None, run_id: str = RUN) -> str:
    """'ok' when the token authenticates on `run_id`, else the error code."""
    try:
        authenticate(token=token, run_id=run_id)
    except errors.GatewayError as exc:
        return exc.code
    return "ok"


def open_session(api, run_id: str = RUN, **body) -> dict:
    body.setdefault("scopes", ["mcp:invoke"])
    response = api.post(f"/api/maestro/v1/runs/{run_id}/mcp/sessions", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def list_sessions(api, run_id: str = RUN) -> list[dict]:
    response = api.get(f"/api/maestro/v1/runs/{run_id}/mcp/sessions")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def revoke(api, sid: str, run_id: str = RUN):
    return api.delete(f"/api/maestro/v1/runs/{run_id}/mcp/sessions/{sid}")


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "sid": uuid.uuid4().hex,
        "run": RUN,
        "scopes": ["mcp:invoke"],
        "servers": [],
        "iat": now,
        "exp": now + 600,
        "iss": settings.SESSION_TOKEN_ISSUER,
        "aud": settings.SESSION_TOKEN_AUDIENCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


def forge(*, key: bytes | None = None, alg: str = "HS256", **overrides) -> str:
    """A token signed by PyJWT with any key and algorithm (the attacker's tool)."""
    return jwt.encode(claims(**overrides), key if key is not None else settings.SESSION_SECRET, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assemble(header: dict, payload: dict, signature: bytes = b"") -> str:
    """A token built by hand, for headers PyJWT refuses to produce."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


def signed(header, payload, key: bytes | None = None) -> str:
    """Any header and payload (JSON-encodable, not necessarily objects), HMAC-SHA256 signed."""
    import hashlib
    import hmac

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(key or settings.SESSION_SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def flush_cache() -> None:
    """What a Redis restart (without persistence) or FLUSHDB does to the gateway's cache."""
    caches["default"].clear()

def revocation_ttl(sid: str) -> float:
    """Seconds left on `sid`'s revocation key, in whichever store is in use (Redis, or the embedded
    file cache, whose files start with the pickled expiry time)."""
    import pickle

    from sessions_app.store import RedisStore, get_store

    store = get_store()
    if isinstance(store, RedisStore):
        return redis_client().ttl(store.rev_key(sid))
    backend = caches["default"]
    with open(backend._key_to_file(store.rev_key(sid)), "rb") as file:
        return pickle.load(file) - time.time()

def redis_client():
    from django_redis import get_redis_connection

    return get_redis_connection("default")

def redis_commands() -> int:
    return redis_client().info("stats")["total_commands_processed"]

def counted(event: str) -> float:
    return REGISTRY.get_sample_value("mcp_sessions_total", {"event": event}) or 0.0

def signed_text(header: dict, payload_text: str, key: bytes | None = None) -> str:
    """A token whose payload is raw JSON text (for numbers json.dumps cannot write, like 1e400)."""
    import hashlib
    import hmac

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload_text.encode())}"
    mac = hmac.new(key or settings.SESSION_SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

def respell_last_char(segment: str) -> str:
    """The same bytes spelled differently: set the unused low bits of the segment's last character
    (base64url of a length that is not a multiple of 3 leaves 2 or 4 of them, ignored by lax decoders)."""
    index = B64URL.index(segment[-1])
    return segment[:-1] + B64URL[index | 1]
