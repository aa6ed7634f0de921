"""Every way a session token can fail, checked through the one verification function, on real
Redis (the revocation check runs for every token that gets that far)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maestro import errors
from maestro.api_errors import status_for
from sessions_app.verify import bearer_token
from tests.sessions_app.helpers import (
    DROP, OTHER_RUN, RUN, assemble, authenticate, b64, claims, create, forge, outcome, respell_last_char, signed, signed_text,
)

OLD_SECRET = b"an-older-secret-that-is-at-least-32-bytes-long"


@pytest.fixture
def issued(db):
    """A real session for RUN and its token."""
    record, token = create(run_id=RUN, scopes=["mcp:invoke", "mcp:tools"], servers=[], ttl_seconds=600, created_by="test")
    return record, token


def test_a_fresh_token_yields_its_claims(issued):
    record, token = issued
    got = authenticate(token=token, run_id=RUN)
    assert (got.sid, got.run_id, got.servers) == (record.sid, RUN, ())
    assert got.scopes == frozenset({"mcp:invoke", "mcp:tools"})
    assert got.expires_at - got.issued_at == 600
    assert got.issued_at == int(record.issued_at.timestamp())


def test_the_token_carries_every_documented_claim(issued):
    _, token = issued
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"sid", "run", "scopes", "servers", "iat", "exp", "iss", "aud"}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_an_issued_token_is_exactly_what_pyjwt_would_write_and_read(settings):
    # The tokens are signed by hand (sessions_app/tokens.py says why); PyJWT, the reference, agrees
    from sessions_app import tokens

    fields = dict(sid="a" * 32, run_id=RUN, scopes=["mcp:invoke"], servers=["s-1"], issued_at=1_800_000_000, expires_at=1_800_000_600)
    token = tokens.issue(**fields)
    claims = {
        "sid": fields["sid"], "run": RUN, "scopes": ["mcp:invoke"], "servers": ["s-1"], "iat": 1_800_000_000,
        "exp": 1_800_000_600, "iss": settings.SESSION_TOKEN_ISSUER, "aud": settings.SESSION_TOKEN_AUDIENCE,
    }
    assert token == jwt.encode(claims, settings.SESSION_SECRET, algorithm="HS256")
    assert jwt.decode(token, settings.SESSION_SECRET, algorithms=["HS256"], audience=settings.SESSION_TOKEN_AUDIENCE,
                      options={"verify_exp": False, "verify_iat": False}) == claims


@pytest.mark.parametrize("token", [None, ""])
def test_no_token_is_missing_token(token):
    assert outcome(token) == "missing_token"


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c", "!!.??.**", "eyJhbGciOiJIUzI1NiJ9.%%%.c2ln", "x" * 9000, "a.b.c.d"])
def test_garbage_is_a_malformed_token(token):
    assert outcome(token) == "malformed_token"


def test_a_changed_signature_is_rejected(issued):
    _, token = issued
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert outcome(f"{head}.{payload}.{flipped}") == "invalid_signature"


def test_a_changed_payload_is_rejected(issued):
    # Given a real token whose payload is swapped for one granting more (same signature)
    _, token = issued
    head, _, signature = token.split(".")
    bigger = b64(json.dumps(claims(scopes=["mcp:invoke", "admin:mcp"])).encode())
    # Then the signature no longer matches
    assert outcome(f"{head}.{bigger}.{signature}") == "invalid_signature"


def test_a_token_signed_with_another_secret_is_rejected():
    assert outcome(forge(key=b"not-the-gateway-secret-but-long-enough-32b")) == "invalid_signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_rejected(alg):
    assert outcome(assemble({"alg": alg, "typ": "JWT"}, claims())) == "invalid_token"


def test_a_header_without_an_algorithm_is_rejected():
    assert outcome(assemble({"typ": "JWT"}, claims(), b"sig")) == "invalid_token"


def test_hs512_with_the_real_secret_is_rejected(settings):
    assert outcome(forge(alg="HS512")) == "invalid_token"


def test_rs256_header_with_the_secret_as_hmac_key_is_rejected(settings):
    # The classic confusion: the header says RS256, the signature is an HMAC made with the key.
    header, payload = {"alg": "RS256", "typ": "JWT"}, claims()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}".encode()
    signature = hmac.new(settings.SESSION_SECRET, signing_input, hashlib.sha256).digest()
    assert outcome(f"{signing_input.decode()}.{b64(signature)}") == "invalid_token"


def test_a_genuine_rs256_token_is_rejected():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert outcome(forge(key=pem, alg="RS256")) == "invalid_token"


def test_expiry_allows_the_leeway_and_no_more(settings):
    settings.SESSION_TOKEN_LEEWAY_SECONDS = 5
    now = int(time.time())
    assert outcome(forge(iat=now - 60, exp=now - 2)) == "ok"
    assert outcome(forge(iat=now - 60, exp=now - 10)) == "token_expired"


def test_without_leeway_an_expired_token_is_expired(settings):
    settings.SESSION_TOKEN_LEEWAY_SECONDS = 0
    now = int(time.time())
    assert outcome(forge(iat=now - 60, exp=now - 2)) == "token_expired"


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "someone-else"},
        {"aud": "another-service"},
        {"sid": DROP},
        {"run": DROP},
        {"exp": DROP},
        {"iat": DROP},
        {"aud": DROP},
        {"scopes": "mcp:invoke"},
        {"servers": [1]},
        {"sid": 42},
        {"iat": int(time.time()) + 3600},
        {"nbf": int(time.time()) + 3600},
        {"exp": "tomorrow"},
        {"exp": True},
        {"aud": ["another-service", "a-third"]},
    ],
    ids=[
        "issuer", "audience", "no-sid", "no-run", "no-exp", "no-iat", "no-aud", "scopes-string", "servers-ints", "sid-int",
        "iat-future", "nbf-future", "exp-string", "exp-bool", "audience-list-without-ours",
    ],
)
def test_well_signed_but_wrong_claims_are_invalid(overrides):
    assert outcome(forge(**overrides)) == "invalid_token"


def test_an_audience_list_that_names_the_gateway_is_accepted(settings):
    assert outcome(forge(aud=["someone-else", settings.SESSION_TOKEN_AUDIENCE])) == "ok"


def test_extra_header_fields_do_not_matter_but_alg_does():
    assert outcome(signed({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims())) == "ok"
    assert outcome(signed({"alg": "hs256", "typ": "JWT"}, claims())) == "invalid_token"


@pytest.mark.parametrize(("header", "payload"), [([], claims()), ({"alg": "HS256"}, ["not", "an", "object"]), ({"alg": "HS256"}, "text")])
def test_json_that_is_not_an_object_is_malformed(header, payload):
    assert outcome(signed(header, payload)) == "malformed_token"


def test_a_token_for_another_run_is_forbidden_not_unauthenticated(issued):
    _, token = issued
    with pytest.raises(errors.Forbidden) as caught:
        authenticate(token=token, run_id=OTHER_RUN)
    assert caught.value.code == "run_mismatch"
    assert status_for(caught.value) == 403


def test_token_failures_map_to_401(issued):
    with pytest.raises(errors.Unauthenticated) as caught:
        authenticate(token="a.b.c", run_id=RUN)
    assert status_for(caught.value) == 401


def test_a_previous_secret_still_verifies_during_rotation(settings):
    # Given a token signed before the rotation, and the old secret listed as previous
    old_token = forge(key=OLD_SECRET)
    settings.SESSION_SECRET_PREVIOUS = [OLD_SECRET]
    assert outcome(old_token) == "ok"
    # When the old secret is finally dropped, the token stops working
    settings.SESSION_SECRET_PREVIOUS = []
    assert outcome(old_token) == "invalid_signature"


def test_new_tokens_are_signed_with_the_current_secret_only(db, settings):
    settings.SESSION_SECRET_PREVIOUS = [OLD_SECRET]
    _, token = create(run_id=RUN, scopes=["mcp:invoke"], ttl_seconds=60, created_by="test")
    jwt.decode(token, settings.SESSION_SECRET, algorithms=["HS256"], audience=settings.SESSION_TOKEN_AUDIENCE)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OLD_SECRET, algorithms=["HS256"], audience=settings.SESSION_TOKEN_AUDIENCE)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer  abc.def.ghi ", "abc.def.ghi")],
)
def test_bearer_header_parsing(header, expected):
    assert bearer_token(header) == expected


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc"])
def test_a_non_bearer_authorization_is_malformed(header):
    with pytest.raises(errors.Unauthenticated) as caught:
        bearer_token(header)
    assert caught.value.code == "malformed_token"


def _times_text(**times) -> str:
    """The JSON text of valid claims with some time claims replaced by raw JSON (NaN, 1e400, ...)."""
    body = json.dumps(claims())[:-1]
    for name, raw in times.items():
        body = body.replace(f'"{name}": ', f'"{name}_was": ')
        body += f', "{name}": {raw}'
    return body + "}"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 30, "-1", "253402300800"])
def test_a_signed_token_whose_time_is_not_a_time_is_invalid_not_a_crash(claim, raw):
    # Given a token we signed whose time claim is NaN, infinite or beyond any datetime
    token = signed_text({"alg": "HS256", "typ": "JWT"}, _times_text(**{claim: raw}))
    # Then it is refused as an invalid token (401), never an exception from int() or datetime
    assert outcome(token) == "invalid_token"


def test_the_raw_times_helper_builds_a_good_token_from_good_times():
    now = int(time.time())
    assert outcome(signed_text({"alg": "HS256", "typ": "JWT"}, _times_text(iat=str(now), exp=str(now + 60), nbf=str(now)))) == "ok"


@pytest.mark.parametrize("segment", [0, 1, 2], ids=["header", "payload", "signature"])
def test_a_padded_segment_is_malformed(issued, segment):
    # Given a valid token with `=` padding added to one of its segments (lax decoders ignore it)
    _, token = issued
    parts = token.split(".")
    parts[segment] += "=" * (4 - len(parts[segment]) % 4 if len(parts[segment]) % 4 else 4)
    # Then it is not the same token spelled another way: it is refused
    assert outcome(".".join(parts)) == "malformed_token"


def _token_with_spare_bits() -> str:
    """A good token all of whose segments have a length that is not a multiple of 4 (so each has
    spare bits in its last character): filler in the header and payload shifts their lengths."""
    for filler in range(12):
        token = signed({"alg": "HS256", "typ": "JWT", "x": "y" * filler}, claims(x="y" * filler))
        if all(len(part) % 4 for part in token.split(".")):
            return token
    raise AssertionError("no filler length gives every segment spare bits")


@pytest.mark.parametrize("segment", [0, 1, 2], ids=["header", "payload", "signature"])
def test_a_non_canonical_spelling_of_a_segment_is_malformed(segment):
    # Given a valid token whose segment's last character differs only in bits the decoder drops
    token = _token_with_spare_bits()
    assert outcome(token) == "ok"
    parts = token.split(".")
    respelled = respell_last_char(parts[segment])
    assert respelled != parts[segment] and b64decode_lax(respelled) == b64decode_lax(parts[segment]), "the same bytes"
    parts[segment] = respelled
    # Then only the canonical spelling is accepted
    assert outcome(".".join(parts)) == "malformed_token"


def test_a_signature_spelled_canonically_still_verifies(issued):
    _, token = issued
    assert outcome(token) == "ok"
    assert len(token.split(".")[2]) == 43, "32 bytes of HMAC: 43 characters, 2 spare bits in the last"


def b64decode_lax(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.mark.parametrize(("token_fn", "words"), [
    (lambda: "a.b", "malformed"),
    (lambda: forge(aud="another-service"), "audience"),
    (lambda: forge(iss="someone-else"), "issuer"),
    (lambda: forge(key=b"not-the-gateway-secret-but-long-enough-32b"), "signature"),
])
def test_each_refusal_says_why(token_fn, words):
    from sessions_app import tokens

    with pytest.raises(errors.Unauthenticated) as caught:
        tokens.verify(token_fn())
    assert isinstance(caught.value.message, str) and words in caught.value.message


def test_a_token_of_exactly_the_maximum_length_is_read():
    from sessions_app.tokens import MAX_TOKEN_CHARS

    base = len(signed({"alg": "HS256", "typ": "JWT"}, claims(x="")))
    for filler in range(MAX_TOKEN_CHARS - base - 8, MAX_TOKEN_CHARS - base + 8):
        token = signed({"alg": "HS256", "typ": "JWT"}, claims(x="y" * max(filler * 3 // 4, 0)))
        if len(token) == MAX_TOKEN_CHARS:
            break
    assert len(token) == MAX_TOKEN_CHARS
    assert outcome(token) == "ok"
    assert outcome(token + "A") == "malformed_token"
