"""The canonical JSON every digest and chain hash is computed over (mcp/canonical.py): properties
that must hold for any JSON value, and one fixed vector, since stored chains depend on the format."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp.canonical import canonical_json, digest

text = st.text(st.characters(exclude_categories=("Cs",)))
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5), max_leaves=30)


def same_json(a, b) -> bool:
    """Equal as JSON, types included (Python alone says 1 == 1.0 == True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@given(json_values)
def test_canonical_json_is_json_that_reads_back_as_the_same_value(value):
    assert same_json(json.loads(canonical_json(value)), value)


@given(json_values)
def test_canonical_json_is_a_fixed_point(value):
    once = canonical_json(value)
    assert canonical_json(json.loads(once)) == once


@given(st.dictionaries(text, scalars, min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_key_order_does_not_change_the_digest(mapping, rnd):
    keys = list(mapping)
    rnd.shuffle(keys)
    assert digest({k: mapping[k] for k in keys}) == digest(mapping)


@given(json_values, json_values)
def test_different_values_have_different_digests(a, b):
    # Reading back is exact (above), so equal digests would mean equal values
    assert (digest(a) == digest(b)) is same_json(a, b)


@given(json_values)
def test_the_digest_is_sha256_of_the_canonical_utf8_bytes(value):
    raw = canonical_json(value)
    assert digest(value) == hashlib.sha256(raw).hexdigest()
    raw.decode("utf-8")  # valid UTF-8, never \\u-escaped non-ASCII
    assert b"\\u00e9" not in canonical_json("é")


def test_the_format_is_frozen():
    # Every stored evidence chain was hashed over this exact spelling.
    assert canonical_json({"b": [1, 2.5, None, True], "a": "é", "c": {"z": 1, "y": "x\n"}}) == (
        '{"a":"é","b":[1,2.5,null,true],"c":{"y":"x\\n","z":1}}'.encode()
    )
    assert digest({"b": 1, "a": [1, "é"]}) == hashlib.sha256('{"a":[1,"é"],"b":1}'.encode()).hexdigest()


def test_values_json_cannot_hold_are_digested_as_their_text():
    import uuid
    from datetime import UTC, datetime

    ident, moment = uuid.UUID(int=7), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert canonical_json({"id": ident, "at": moment}) == f'{{"at":"{moment}","id":"{ident}"}}'.encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")], {"a": float("nan")}])
def test_non_finite_numbers_have_no_canonical_form(value):
    with pytest.raises(ValueError):
        canonical_json(value)


def test_a_lone_surrogate_has_no_canonical_form():
    with pytest.raises(UnicodeEncodeError):
        canonical_json({"a": "\ud800"})
