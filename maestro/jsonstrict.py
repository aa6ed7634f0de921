"""Strict JSON for request bodies: one loader for every door (DRF's parser, the data plane).

Python's `json` accepts what the rest of the gateway cannot hold: NaN, Infinity and 1e400 (the
canonical digest refuses them), lone surrogates such as "\\ud800" (neither UTF-8 nor PostgreSQL
can store them, and hashing them raises), NUL (PostgreSQL text refuses it), UTF-8-encoded
surrogates (it decodes bytes with `surrogatepass`), and nesting deep enough to exhaust the stack
(RecursionError, a 500). `json_loads_strict` refuses each of them with `InvalidInput`
(code `invalid_json`, 400) and a message that says which rule the body broke.

Cost: one C `json.loads` plus a C regex scan and two counts over the text; the Python walk over the parsed value
runs only when the text could break a rule (an escape that may be NUL or a surrogate, or more
brackets than the depth limit), so ordinary bodies pay almost nothing for the checks.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from maestro.errors import InvalidInput

DEFAULT_MAX_DEPTH = 32
# An escape that may stand for NUL or a surrogate (a preceding escaped backslash can make it a
# false alarm: the walk then decides).
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_json")


def _no_constant(name: str):
    raise _refuse(f"request body holds {name}: JSON numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _refuse(f"request body holds the number {text[:40]}, which is out of range")
    return value


def _check_text(value: str, *, refuse_nul: bool) -> None:
    if refuse_nul and "\x00" in value:
        raise _refuse("request body holds a string with a NUL character (\\u0000)")
    if _LONE_SURROGATE.search(value):
        raise _refuse("request body holds a string with a lone surrogate (an unpaired \\ud800-\\udfff escape)")


def _walk(value: Any, *, max_depth: int, check_strings: bool, refuse_nul: bool) -> None:
    """Iterative (a recursive walk could itself exhaust the stack): depth, and every key and string."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise _refuse(f"request body is nested too deep (more than {max_depth} levels)")
            for key, child in item.items():
                if check_strings:
                    _check_text(key, refuse_nul=refuse_nul)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                raise _refuse(f"request body is nested too deep (more than {max_depth} levels)")
            stack.extend((child, depth + 1) for child in item)
        elif check_strings and isinstance(item, str):
            _check_text(item, refuse_nul=refuse_nul)


def json_loads_strict(raw: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH, refuse_nul: bool = True) -> Any:
    """The parsed body, or InvalidInput(code="invalid_json"). `raw` bytes must be UTF-8 (strictly:
    no encoded surrogates). `max_depth` counts arrays and objects (`{"a": [1]}` is 2 deep).
    `refuse_nul=False` lets NUL through for payloads that are only digested, never stored as text."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("request body is not valid UTF-8") from None
    else:
        text = raw
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except InvalidInput:
        raise
    except RecursionError:
        raise _refuse(f"request body is nested too deep (more than {max_depth} levels)") from None
    except ValueError:  # JSONDecodeError, and int() of more than 4300 digits
        raise _refuse("request body is not valid JSON") from None
    deep = text.count("[") + text.count("{") > max_depth
    # Raw text can hold a lone surrogate only when it came in as a str; bytes were decoded strictly.
    risky = _RISKY_ESCAPE.search(text) is not None or (not isinstance(raw, (bytes, bytearray, memoryview)) and _LONE_SURROGATE.search(text))
    if deep or risky:
        _walk(value, max_depth=max_depth, check_strings=bool(risky), refuse_nul=refuse_nul)
    return value
