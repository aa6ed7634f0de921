"""The strict JSON loader every door uses for request bodies (maestro.jsonstrict)."""

from __future__ import annotations

import json

import pytest

from maestro.errors import InvalidInput
from maestro.jsonstrict import json_loads_strict


def refusal(raw, **kwargs) -> str:
    with pytest.raises(InvalidInput) as caught:
        json_loads_strict(raw, **kwargs)
    assert caught.value.code == "invalid_json"
    return caught.value.message


@pytest.mark.parametrize("raw", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "[-1e400]", "1E+999"])
def test_non_finite_numbers_are_refused(raw):
    assert "finite" in refusal(raw) or "out of range" in refusal(raw)


def test_big_integers_and_ordinary_floats_are_numbers():
    assert json_loads_strict("[123456789012345678901234567890, 1.5e300, -0.0]") == [123456789012345678901234567890, 1.5e300, -0.0]


def test_an_integer_too_long_to_convert_is_invalid_json_not_a_crash():
    assert refusal("1" * 5000) == "request body is not valid JSON"


@pytest.mark.parametrize("raw", [r'"\u0000"', r'{"\u0000": 1}', r'["a", {"b": "x\u0000"}]'])
def test_nul_is_refused_in_values_and_keys(raw):
    assert "NUL" in refusal(raw)


def test_nul_may_be_allowed_for_payloads_that_are_only_digested():
    assert json_loads_strict(r'{"a": "x\u0000"}', refuse_nul=False) == {"a": "x\x00"}


@pytest.mark.parametrize("raw", [r'"\ud800"', r'"\uDFFF"', r'{"\udbff": 1}', r'["\ude00\ud800"]', '"\ud800"'])
def test_lone_surrogates_are_refused_escaped_or_in_a_str(raw):
    assert "surrogate" in refusal(raw)


def test_utf8_encoded_surrogates_are_not_utf8():
    assert refusal(b'"\xed\xa0\x80"') == "request body is not valid UTF-8"


def test_a_surrogate_pair_is_one_character():
    assert json_loads_strict(r'"\ud83d\ude00"') == "\U0001F600"
    assert json_loads_strict('"\U0001F600"'.encode()) == "\U0001F600"


def test_an_escaped_backslash_before_u0000_is_text_not_nul():
    # The fast scan sees "\u0000" in the text; the walk finds only a backslash and "u0000"
    assert json_loads_strict(r'"\\u0000 and \\ud800"') == "\\u0000 and \\ud800"


@pytest.mark.parametrize(("depth", "ok"), [(8, True), (9, False)])
def test_depth_counts_arrays_and_objects(depth, ok):
    raw = '{"a": ' * (depth // 2) + "[" * (depth - depth // 2) + "]" * (depth - depth // 2) + "}" * (depth // 2)
    if ok:
        assert json_loads_strict(raw, max_depth=8) is not None
    else:
        assert "deep" in refusal(raw, max_depth=8)


def test_brackets_inside_strings_are_not_depth():
    assert json_loads_strict(json.dumps({"a": "[" * 100}), max_depth=2) == {"a": "[" * 100}


def test_nesting_past_the_stack_is_a_refusal_not_a_recursion_error():
    assert "deep" in refusal("[" * 200_000 + "]" * 200_000)


@pytest.mark.parametrize("raw", ["", "{", "{'a': 1}", '{"a": 1,}', b"\xff", "[1] [2]"])
def test_invalid_json_is_refused(raw):
    assert refusal(raw)
