"""Request bodies every endpoint shares: credentials before parsing, a JSON depth limit, and
size refusals that name the limit."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from clickstream.schemas import MAX_JSON_DEPTH
from tests.helpers import event

STAFF = {"Authorization": "Bearer staff-secret-token"}
DEEP = b"[" * 10_000  # what found the RecursionError: about 10 KB of nested arrays


def nested(depth: int) -> object:
    """A JSON value ``depth`` arrays deep."""
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def admin(keys: dict) -> dict:
    return {"Authorization": f"Bearer {keys['admin_key']}"}


# (method, path, credential) of every endpoint whose JSON body the schema layer parses.
PARSED = [
    ("POST", "/v1/staff/tenants", "staff"),
    ("PATCH", "/v1/staff/tenants/acme", "staff"),
    ("POST", "/v1/staff/tenants/acme/train", "staff"),
    ("POST", "/v1/admin/erase", "admin"),
    ("PUT", "/v1/admin/rules", "admin"),
]


def _send(client, method: str, path: str, body: bytes, headers: dict | None = None):
    return client.open(
        path, method=method, data=body, content_type="application/json", headers=headers or {}
    )


@pytest.mark.parametrize(("method", "path", "credential"), PARSED)
@pytest.mark.parametrize("body", [DEEP, b"{not json", b'{"name": "x"}', b""])
def test_without_a_valid_key_any_body_is_a_401(client, acme, method, path, credential, body):
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {acme['site_key']}"}]
    wrong.append(admin(acme) if credential == "staff" else STAFF)
    for headers in wrong:
        res = _send(client, method, path, body, headers)
        assert res.status_code == 401, (headers, res.get_data()[:300])
        assert res.json["code"] == 401 and "Authorization" in res.json["message"]
        assert res.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "credential"), PARSED)
def test_over_deep_json_is_a_400_naming_the_limit(client, acme, method, path, credential):
    headers = STAFF if credential == "staff" else admin(acme)
    too_deep = json.dumps({"x": nested(MAX_JSON_DEPTH)}).encode()
    for body in (DEEP, too_deep):
        res = _send(client, method, path, body, headers)
        assert res.status_code == 400, res.get_data()[:300]
        assert res.json["message"] == (
            f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels (arrays and objects)"
        )


def test_json_at_the_depth_limit_is_parsed(client, acme):
    at_limit = json.dumps({"rate_limit": 5, "x": nested(MAX_JSON_DEPTH - 1)}).encode()
    res = _send(client, "PATCH", "/v1/staff/tenants/acme", at_limit, STAFF)
    # Parsed: the schema then refuses the unknown field.
    assert res.status_code == 422 and res.json["message"].startswith("x:")


def test_the_site_key_endpoints_refuse_over_deep_json_alike(app, acme):
    lane, flask = app.test_client(), Client(app.wsgi_app.flask_wsgi)
    for client in (lane, flask):
        for extra, status in ((nested(MAX_JSON_DEPTH - 3), 200), (nested(MAX_JSON_DEPTH - 2), 400)):
            body = {"site": acme["site_key"], "visitor": "v1",
                    "events": [event("page_view", extra=extra)]}  # fmt: skip
            res = client.post("/v1/collect", data=json.dumps(body), content_type="text/plain")
            assert res.status_code == status, res.get_data()[:300]
        for body in (DEEP, json.dumps({"site": acme["site_key"], "x": nested(MAX_JSON_DEPTH)})):
            for path in ("/v1/collect", "/v1/recommend"):
                res = client.post(path, data=body, content_type="application/json")
                assert res.status_code == 400, (path, res.get_data()[:300])
                assert str(MAX_JSON_DEPTH) in res.json["message"]


def test_the_depth_limit_is_documented(client):
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert f"at most {MAX_JSON_DEPTH} levels deep (400)" in readme
    info = client.get("/v1/openapi.json").json["info"]["description"]
    assert f"at most {MAX_JSON_DEPTH} levels deep (400)" in info


def test_the_apps_json_provider_has_the_same_limit(app):
    with app.app_context():
        assert app.json.loads(json.dumps(nested(MAX_JSON_DEPTH))) == nested(MAX_JSON_DEPTH)
        with pytest.raises(ValueError, match=str(MAX_JSON_DEPTH)):
            app.json.loads(DEEP)


def test_a_lone_surrogate_in_a_parsed_body_is_a_422_naming_where(client, acme):
    body = json.dumps({"name": "newshop", "origins": ["https://ok.example", "https://\ud800"]})
    res = _send(client, "POST", "/v1/staff/tenants", body.encode(), STAFF)
    assert res.status_code == 422, res.get_data()
    assert res.json["message"].startswith("origins.1:") and "surrogate" in res.json["message"]
    body = json.dumps({"pinned": ["p1", "\udc00"]})
    res = _send(client, "PUT", "/v1/admin/rules", body.encode(), admin(acme))
    assert res.status_code == 422 and res.json["message"].startswith("pinned.1:")


# -- whatever the body, per endpoint family ---------------------------------------------------

_lone = st.characters(categories=["Cs"])  # half of a UTF-16 pair, as "\ud800" arrives parsed
_text = st.text(max_size=6) | st.tuples(st.text(max_size=3), _lone).map("".join)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
HOSTILE_BODIES = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),  # escapes lone surrogates as JSON allows
    st.integers(MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH + 1).map(lambda d: json.dumps(nested(d)).encode()),
    st.integers(1, 12_000).map(lambda d: b"[" * d),
    st.binary(max_size=40),
)  # fmt: skip
FIXTURES_OK = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FIXTURES_OK
@given(
    endpoint=st.sampled_from(PARSED), body=HOSTILE_BODIES, key=st.sampled_from(["valid", "none"])
)
def test_admin_and_staff_bodies_are_answered(client, acme, endpoint, body, key):
    method, path, credential = endpoint
    headers = {} if key == "none" else STAFF if credential == "staff" else admin(acme)
    res = _send(client, method, path, body, headers)
    assert res.status_code < 500, res.get_data()[:300]
    assert res.status_code < 400 or res.json["code"] == res.status_code
    if key == "none":
        assert res.status_code == 401
    elif body.startswith(b"[" * (MAX_JSON_DEPTH + 1)):
        assert res.status_code == 400


@FIXTURES_OK
@given(body=HOSTILE_BODIES, wrap=st.booleans())
def test_recommend_bodies_are_answered(client, acme, body, wrap):
    if wrap:  # inside a request that is otherwise valid
        body = b'{"site": "%s", "visitor": "v1", "exclude": %s}' % (acme["site_key"].encode(), body)
    res = client.post("/v1/recommend", data=body, content_type="application/json")
    assert res.status_code < 500, res.get_data()[:300]
    assert res.json["code" if res.status_code >= 400 else "offers"] is not None


# -- size refusals name the limit -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "limit"), [("/v1/collect", 64 * 1024), ("/v1/staff/tenants", 16 * 1024)]
)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_413_naming_it(app, path, limit, framing):
    big = b'{"name": "' + b"x" * limit + b'"}'
    environ = {}
    if framing == "chunked":
        # What gunicorn hands over for a chunked body: no length, a stream it terminates.
        environ = {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(big)}
    res = app.test_client().post(
        path,
        data=big if framing == "content-length" else None,
        content_type="application/json",
        headers=STAFF,
        environ_overrides=environ,
    )
    assert res.status_code == 413, res.get_data()[:300]
    assert res.json["code"] == 413
    assert res.json["message"] == f"body: larger than this endpoint's limit of {limit} bytes"
