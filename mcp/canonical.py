"""Canonical JSON and digests: the one definition every hash in the gateway is computed over
(argument and result digests, policy input digests, the evidence chain). Changing it breaks
verification of every stored chain, so it is versioned by the callers' formats, not edited."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str).encode()


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()
