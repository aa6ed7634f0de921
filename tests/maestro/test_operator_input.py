"""Hostile input on the operator API (registry and run sessions): every one a 400 in the one error
shape, never a 500. The rules live once: the strict JSON parser (maestro.jsonstrict, behind DRF's
parser), the bounded pagination (maestro.pagination) and the NUL guard on URLs (middleware)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_key

SERVERS = "/api/maestro/v1/mcp/servers"
SESSIONS = "/api/maestro/v1/runs/run-1/mcp/sessions"
LISTS = [SERVERS, SESSIONS]


@pytest.fixture
def operator(api, db):
    """A key that may read, open sessions and write the registry."""
    api.credentials(HTTP_X_API_KEY=make_key(["admin:mcp"]))
    return api


def assert_refused(response, *, code: str | None = None, field: str | None = None) -> dict:
    assert response.status_code == 400, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "details"} and error["message"]
    assert "Traceback" not in response.content.decode()
    if code:
        assert error["code"] == code, error
    if field:
        assert error.get("details", {}).get("field") == field, error
    return error


def post_raw(api, path: str, text: str | bytes):
    return api.generic("POST", path, text.encode() if isinstance(text, str) else text, content_type="application/json")


def nested(depth: int) -> str:
    return '{"name": "x", "url": "http://127.0.0.1:1/mcp", "description": ' + "[" * depth + "]" * depth + "}"


# --- query strings ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "query",
    ["limit=100000000000000000000", "limit=-1", "limit=0", "limit=ten", "limit=1.5", "limit=", "limit=1001",
     "offset=100000000000000000000", "offset=-5", "offset=x", "offset=9223372036854775808"],
)
def test_a_bad_page_window_is_a_400_naming_the_parameter(operator, path, query):
    name = query.split("=")[0]
    assert_refused(operator.get(f"{path}?{query}"), code="invalid_request", field=name)


@pytest.mark.parametrize("path", LISTS)
def test_a_good_page_window_still_pages(operator, path):
    for index in range(3):
        operator.post(SERVERS, {"name": f"s{index}", "url": f"http://127.0.0.1:{index + 1}/mcp"}, format="json")
        operator.post(SESSIONS, {"scopes": ["mcp:invoke"]}, format="json")
    first = operator.get(f"{path}?limit=2&offset=0").json()
    assert (first["count"], len(first["results"]), first["previous"]) == (3, 2, None)
    assert "limit=2" in first["next"] and "offset=2" in first["next"]
    second = operator.get(f"{path}?limit=2&offset=2").json()
    assert (len(second["results"]), second["next"]) == (1, None)
    assert len(operator.get(f"{path}?limit=1000").json()["results"]) == 3


@pytest.mark.parametrize(
    "url",
    [f"{SERVERS}?search=%00", f"{SERVERS}?search=a%00b", f"{SERVERS}?tag=%00", f"{SESSIONS}?x=%00",
     f"{SERVERS}/%00", f"{SESSIONS}/%00", "/api/maestro/v1/runs/run%00/mcp/sessions"],
)
def test_a_nul_in_the_url_is_a_400(operator, url):
    response = operator.delete(url) if url.endswith("sessions/%00") else operator.get(url)
    assert_refused(response, code="invalid_request")


def test_search_without_nul_still_filters(operator):
    operator.post(SERVERS, {"name": "github", "url": "http://127.0.0.1:1/mcp"}, format="json")
    operator.post(SERVERS, {"name": "files", "url": "http://127.0.0.1:2/mcp"}, format="json")
    assert [s["name"] for s in operator.get(f"{SERVERS}?search=hub").json()["results"]] == ["github"]


# --- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("depth", [None, 3000, 100_000])
def test_deeply_nested_json_is_a_400(operator, settings, path, depth):
    # nested(n) is n + 1 levels deep: one more than the limit, then 3,000 and 100,000
    error = assert_refused(post_raw(operator, path, nested(depth or settings.MCP_MAX_JSON_DEPTH)), code="invalid_json")
    assert "deep" in error["message"]


def test_json_at_the_depth_limit_reaches_validation(operator, settings):
    # exactly MCP_MAX_JSON_DEPTH levels parse (the field is then refused for its type, naming it)
    assert_refused(post_raw(operator, SERVERS, nested(settings.MCP_MAX_JSON_DEPTH - 1)), code="invalid_request", field="description")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_a_400(operator, number):
    assert_refused(post_raw(operator, SERVERS, '{"name": "x", "url": "http://127.0.0.1:1/mcp", "timeout_ms": ' + number + "}"), code="invalid_json")
    assert_refused(post_raw(operator, SESSIONS, '{"scopes": ["mcp:invoke"], "ttl_seconds": ' + number + "}"), code="invalid_json")


# Every string field of both bodies, with a NUL, a lone surrogate (escaped, and as raw bytes).
SERVER_BODY = {
    "name": "x", "url": "http://127.0.0.1:1/mcp", "description": "d", "scopes": ["s:a"], "tags": ["t"],
    "tool_allow": ["a*"], "tool_deny": ["b*"], "auth_headers": {"X-Token": "v"},
}
SESSION_BODY = {"scopes": ["mcp:invoke"], "servers": ["x"]}
BAD_TEXT = {"nul": "a\u0000b", "lone-high": "a\ud800b", "lone-low": "\udfff"}


def _with_bad(body: dict, path: tuple, bad: str) -> dict:
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    return copy


def _string_paths(body: dict):
    for key, value in body.items():
        if isinstance(value, str):
            yield (key,)
        elif isinstance(value, list):
            yield (key, 0)
        elif isinstance(value, dict):
            for sub in value:
                yield (key, sub)
                yield ("key-of", key, sub)


def _cases():
    for path_name, url, body in (("servers", SERVERS, SERVER_BODY), ("sessions", SESSIONS, SESSION_BODY)):
        for where in _string_paths(body):
            for bad_name, bad in BAD_TEXT.items():
                yield pytest.param(url, body, where, bad, id=f"{path_name}-{'.'.join(map(str, where))}-{bad_name}")


@pytest.mark.parametrize(("url", "body", "where", "bad"), list(_cases()))
def test_nul_and_lone_surrogates_in_any_string_are_a_400(operator, url, body, where, bad):
    if where[0] == "key-of":  # the bad text as a key of the object
        copy = json.loads(json.dumps(body))
        copy[where[1]] = {bad: copy[where[1]][where[2]]}
    else:
        copy = _with_bad(body, where, bad)
    text = json.dumps(copy)  # ASCII: escapes like \u0000 and \ud800
    error = assert_refused(post_raw(operator, url, text), code="invalid_json")
    assert "NUL" in error["message"] or "surrogate" in error["message"]


def test_a_raw_utf8_encoded_surrogate_is_a_400(operator):
    # CESU-style bytes ED A0 80: Python's json accepts them (surrogatepass); strict UTF-8 does not
    raw = b'{"scopes": ["mcp:invoke"], "servers": ["a\xed\xa0\x80"]}'
    assert_refused(post_raw(operator, SESSIONS, raw), code="invalid_json")


def test_a_surrogate_pair_is_a_character_not_an_error(operator):
    response = post_raw(operator, SERVERS, json.dumps({**SERVER_BODY, "description": "smile \U0001F600"}))
    assert response.status_code == 201, response.content
    assert response.json()["description"] == "smile \U0001F600"
