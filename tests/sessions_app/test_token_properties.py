"""Property: no mutation of a valid session token is accepted (one token, one spelling, one
signature), checked on the verifier itself, which has no I/O."""

from __future__ import annotations

import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from maestro import errors
from sessions_app import tokens

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Mostly the base64url alphabet (the mutations that get furthest), plus separators, padding and
# anything else.
chars = st.sampled_from(ALPHABET) | st.sampled_from(".=+/ ") | st.characters()


@pytest.fixture(scope="module")
def token() -> str:
    now = int(time.time())
    return tokens.issue(sid="a" * 32, run_id="run-1", scopes=["mcp:invoke"], servers=[], issued_at=now, expires_at=now + 3600)


def refused(candidate: str) -> bool:
    try:
        tokens.verify(candidate)
    except errors.Unauthenticated:
        return True
    return False


def test_the_unmutated_token_verifies(token):
    assert not refused(token)


@st.composite
def mutations(draw, original: str) -> str:
    kind = draw(st.sampled_from(["replace", "insert", "delete", "swap", "truncate", "append", "case", "pad", "respell"]))
    i = draw(st.integers(0, len(original) - 1))
    if kind in ("pad", "respell") and original.count(".") == 2:
        # Mutations a lax base64url decoder cannot see: the same bytes, spelled another way.
        parts = original.split(".")
        k = draw(st.integers(0, 2))
        if kind == "pad":
            parts[k] += "=" * draw(st.integers(1, 3))
        elif parts[k] and parts[k][-1] in ALPHABET:
            parts[k] = parts[k][:-1] + ALPHABET[ALPHABET.index(parts[k][-1]) | draw(st.integers(1, 15))]
        return ".".join(parts)
    if kind == "replace":
        return original[:i] + draw(chars.filter(lambda c: c != original[i])) + original[i + 1:]
    if kind == "insert":
        return original[:i] + draw(chars) + original[i:]
    if kind == "delete":
        return original[:i] + original[i + 1:]
    if kind == "swap":
        j = draw(st.integers(0, len(original) - 1))
        swapped = list(original)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        return "".join(swapped)
    if kind == "truncate":
        return original[:i]
    if kind == "append":
        return original + draw(st.text(chars, min_size=1, max_size=4))
    return original[:i] + original[i].swapcase() + original[i + 1:]


@settings(max_examples=500)  # no I/O: 500 mutations cost well under a second
@given(data=st.data())
def test_every_mutation_of_a_valid_token_is_refused(token, data):
    mutated = data.draw(mutations(token))
    assume(mutated != token)  # a swap of two equal characters, or a case change of a digit, is no mutation
    assert refused(mutated), mutated


@settings(max_examples=300)
@given(data=st.data())
def test_several_mutations_are_refused_too(token, data):
    mutated = token
    for _ in range(data.draw(st.integers(2, 5))):
        mutated = data.draw(mutations(mutated)) if mutated else mutated
    assume(mutated != token)
    assert refused(mutated), mutated
