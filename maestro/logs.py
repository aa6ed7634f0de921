"""JSON-lines logging with redaction of credentials wherever they appear in a record.

The filter runs on every record before formatting: the message arguments, `extra` fields and any
nested dicts/lists are walked; a value under a sensitive key becomes "[REDACTED]", and strings are
scrubbed of bearer credentials, JWTs and Maestro API keys even when nobody labelled them.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"(authorization|x[-_]api[-_]key|api[-_]?key|set[-_]cookie|^cookie$|^http_cookie$|proxy[-_]authorization"
    r"|token|secret|password|passwd|credential|private[-_]?key)",
    re.IGNORECASE,
)
_SECRET_IN_TEXT = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # JWT-shaped
    (re.compile(r"\bmcpk_[A-Za-z0-9_-]{8,}"), REDACTED),  # Maestro API keys
    # An authorization value is a credential whatever its scheme ("Token s3cr3t", "Negotiate ..."):
    # the scheme word goes too, so no scheme can leave the credential after it.
    (re.compile(r"(?i)((?:proxy[-_])?authorization[\"']?\s*[=:]\s*[\"']?)(?:[A-Za-z][\w.-]*\s+)?[^\s&\"',;}]+"), r"\1" + REDACTED),
    (
        re.compile(r"(?i)((?:token|secret|password|passwd|api[_-]?key|cookie)[\"']?\s*[=:]\s*[\"']?)([^\s&\"',;}]+)"),
        r"\1" + REDACTED,
    ),
]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SENSITIVE_KEY.search(key))


def scrub_text(text: str) -> str:
    for pattern, replacement in _SECRET_IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, _depth: int = 0) -> Any:
    if _depth > 8:
        return "[TRUNCATED]"
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if is_sensitive_key(k) else redact(v, _depth + 1)) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(redact(v, _depth + 1) for v in value)
    if isinstance(value, (list, set, frozenset)):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return scrub_text(repr(value))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = str(record.msg) % redact(record.args)
            except (TypeError, ValueError):
                record.msg = f"{record.msg} {redact(record.args)!r}"
            record.args = None
        if isinstance(record.msg, (dict, list)):
            record.msg = redact(record.msg)
        elif not isinstance(record.msg, str):
            record.msg = str(record.msg)
        if isinstance(record.msg, str):
            record.msg = scrub_text(record.msg)
        for key in [k for k in vars(record) if k not in _STANDARD_ATTRS]:
            value = getattr(record, key)
            setattr(record, key, REDACTED if is_sensitive_key(key) else redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.msg if isinstance(record.msg, (dict, list)) else record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            # Stack traces go to the operator's log, scrubbed, never to a client.
            entry["exc"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, separators=(",", ":"))
