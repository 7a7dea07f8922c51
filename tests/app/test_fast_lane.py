"""app.fast_lane answers what Flask would have answered, and only what it can judge whole.

The lane and Flask's views share the endpoint cores, so the tests here are differential: each
generated request goes once through the app as served (lane first) and once, with fresh event
ids, straight to Flask (``FastLane.flask_wsgi``), and the two answers must agree on status, body
and the headers clients act on.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hyp_event
from hypothesis import strategies as st
from werkzeug.test import Client

from clickstream.schemas import MAX_JSON_DEPTH
from store import keys
from store.tenants import create_tenant
from tests.helpers import event

ALLOWED = "https://shop.example"
CLIENT_HEADERS = ("Content-Type", "Vary", "Access-Control-Allow-Origin", "Retry-After")
_ids = itertools.count()


@pytest.fixture
def both(app):
    """(client through the lane, client straight to Flask, the paths Flask was handed)."""
    lane = app.wsgi_app
    handed: list[str] = []
    flask_wsgi = lane.flask_wsgi

    def counting(environ, start_response):
        handed.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return flask_wsgi(environ, start_response)

    lane.flask_wsgi = counting
    return app.test_client(), Client(flask_wsgi), handed


def _same_answer(a, b, ignore=()) -> None:
    assert a.status_code == b.status_code, (a.get_data(), b.get_data())
    assert _body(a, ignore) == _body(b, ignore)
    for name in CLIENT_HEADERS:
        assert a.headers.get(name) == b.headers.get(name), name
    assert a.headers.get("X-Request-ID") and b.headers.get("X-Request-ID")
    assert "Set-Cookie" not in a.headers


def _body(res, ignore) -> object:
    data = orjson.loads(res.get_data())
    for offer in data.get("offers", []) if isinstance(data, dict) else []:
        for name in ignore:
            assert offer.pop(name, None), f"offer without {name}"
    return data


# -- which requests the lane takes --------------------------------------------------------


def test_everyday_requests_never_reach_flask(both, acme, acme_catalog):
    client, _, handed = both
    body = {"site": acme["site_key"], "visitor": "v1", "events": [event(), event("page_view")]}
    res = client.post("/v1/collect", json=body, headers={"Origin": ALLOWED})
    assert res.status_code == 200 and res.json["accepted"] == 2
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=v1&n=2")
    assert res.status_code == 200 and len(res.json["offers"]) == 2
    assert handed == []


def test_what_the_lane_cannot_judge_goes_to_flask_with_its_body(both, r, acme):
    client, _, handed = both
    bad_only = {"site": acme["site_key"], "visitor": "v1", "events": [{"id": "x", "type": "nope"}]}
    res = client.post("/v1/collect", json=bad_only)
    # Flask read the body the lane had already read: it names the bad field.
    assert res.status_code == 422 and res.json["message"].startswith("events.0.")
    res = client.post("/v1/collect", data=b"{not json", content_type="text/plain")
    assert res.status_code == 400 and "malformed JSON" in res.json["message"]
    res = client.post("/v1/recommend", json={"site": acme["site_key"], "visitor": "v1"})
    assert res.status_code == 200
    res = client.options(f"/v1/recommend?site={acme['site_key']}", headers={"Origin": ALLOWED})
    assert res.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert handed == [
        "POST /v1/collect",
        "POST /v1/collect",
        "POST /v1/recommend",
        "OPTIONS /v1/recommend",
    ]
    assert r.xlen(keys.event_stream("acme")) == 0


# -- differential: collect ------------------------------------------------------------------

NO_TS = object()  # an event sent without a client time


def nested(depth: int) -> object:
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


GOOD_EVENTS = st.sampled_from(
    [
        {"type": "product_view", "product_id": "p1"},
        {"type": "add_to_cart", "product_id": "p2", "category": "hats"},
        {"type": "page_view", "url": "https://shop.example/x?q=1#f"},
        {"type": "page_view", "url": "https://u:p@shop.example/a;jsessionid=S/b%3Fq=1"},
        {"type": "search", "query": "red shoes"},
        {"type": "search", "query": "\ud83d\ude00"},  # a surrogate pair: one character
        {"type": "page_view", "ts": NO_TS},
        {"type": "page_view", "colour": nested(MAX_JSON_DEPTH - 3)},  # at the depth limit
    ]
)
BAD_EVENTS = st.sampled_from(
    [
        {"type": "teleport"},
        {"type": "product_view"},  # no product_id
        {"type": "product_view", "product_id": "p" * 65},
        {"type": "page_view", "colour": "red"},
        {"type": "page_view", "ts": "yesterday"},
        {"type": "page_view", "id": ""},
        {"type": "search", "query": "a\ud800"},
        {"type": "page_view", "url": "\udfff"},
        {"type": "page_view", "id": "\ud800"},
        {"type": "page_view", "ts": None},
        {"type": "page_view", "colour": nested(MAX_JSON_DEPTH - 2)},  # past it: the body is a 400
    ]
)


def mostly(usual: object, *others: object) -> st.SearchStrategy:
    """``usual`` three times in four, else one of ``others``: most generated requests must be
    everyday ones, which the lane answers, or the comparison would mostly be of errors."""
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), st.sampled_from(others))


@st.composite
def collect_requests(draw):
    events = draw(
        mostly(1, 0).flatmap(
            lambda least: st.lists(
                st.one_of(GOOD_EVENTS, GOOD_EVENTS, GOOD_EVENTS, BAD_EVENTS),
                min_size=least,
                max_size=4,
            )
        )
    )
    if events and draw(st.booleans()):
        events.append(events[0])  # a retry inside the batch
    return {
        "events": events,
        "visitor": draw(mostly("v1", "v-2", "", "v" * 65)),
        "site_in": draw(mostly("body", "query", "header", "none")),
        "site_known": draw(mostly(True, False)),
        "body_dnt": draw(mostly(None, True, False, "yes")),
        "origin": draw(mostly(ALLOWED, None, "https://evil.example")),
        "dnt": draw(mostly(None, "1", "0")),
        "gpc": draw(mostly(None, "1")),
        "content_type": draw(
            mostly("text/plain;charset=UTF-8", "application/json", "", "text/xml")
        ),
        "wrap": draw(mostly("object", "array", "truncated")),
    }


def _collect(client, req: dict, site_key: str, tag: str):
    """Send ``req`` with its event ids made unique to this send (so both sends store); of one
    length, so that the two sends' bodies differ only in the ids' digits."""
    ids: dict[int, str] = {}
    events = []
    for raw in req["events"]:
        e = {"id": ids.setdefault(id(raw), f"{tag}{next(_ids):09d}"), "ts": event()["ts"], **raw}
        if e["ts"] is NO_TS:
            del e["ts"]
        events.append(e)
    body: object = {"visitor": req["visitor"], "events": events}
    site = site_key if req["site_known"] else "unknown-key"
    if req["site_in"] == "body":
        body["site"] = site
    if req["body_dnt"] is not None:
        body["dnt"] = req["body_dnt"]
    if req["wrap"] == "array":
        body = [body]
    try:
        data = orjson.dumps(body)
    except orjson.JSONEncodeError:  # a lone surrogate: escaped, as JSON.stringify writes it
        data = json.dumps(body, separators=(",", ":")).encode()
    if req["wrap"] == "truncated":
        data = data[:-1]
    headers = {
        name: value
        for name, value in (("Origin", req["origin"]), ("DNT", req["dnt"]), ("Sec-GPC", req["gpc"]))
        if value is not None
    }
    if req["site_in"] == "header":
        headers["X-Site-Key"] = site
    query = {"site": site} if req["site_in"] == "query" else {}
    environ = {"CONTENT_TYPE": req["content_type"]}
    return client.post(
        "/v1/collect", data=data, query_string=query, headers=headers, environ_overrides=environ
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(req=collect_requests())
def test_collect_answers_match_flask(both, r, acme, req):
    lane_client, flask_client, _ = both
    stream = keys.event_stream("acme")
    before = r.xlen(stream)
    via_lane = _collect(lane_client, req, acme["site_key"], "L")
    stored_by_lane = r.xlen(stream) - before
    via_flask = _collect(flask_client, req, acme["site_key"], "F")
    stored_by_flask = r.xlen(stream) - before - stored_by_lane
    # Rejected events are reported with their ids, which differ by construction.
    for res in (via_lane, via_flask):
        res.set_data(re.sub(rb'"[LF][0-9]+"', b'"<id>"', res.get_data()))
    _same_answer(via_lane, via_flask)
    assert via_lane.status_code < 500, via_lane.get_data()  # every input is answered
    assert stored_by_lane == stored_by_flask
    hyp_event(f"status {via_lane.status_code}")


# -- differential: recommend ----------------------------------------------------------------


@st.composite
def recommend_queries(draw):
    query = [("visitor", draw(mostly("v1", "v2", "", "v" * 65, "é")))]
    query.append(("n", draw(mostly("3", "1", "20", "0", "21", "x", ""))))
    extra = draw(mostly(None, ("explain", "1"), ("exclude", "p1,p2"), ("dnt", "1"),
                        ("visitor", "v3"), ("colour", "red"), ("n", "2")))  # fmt: skip
    if extra:
        query.append(extra)
    if draw(st.booleans()):
        query = [p for p in query if p[0] != "n"]  # n is optional
    return {
        "query": draw(st.permutations(query)),
        "site_in": draw(mostly("query", "header", "none")),
        "site_known": draw(mostly(True, False)),
        "origin": draw(mostly(ALLOWED, None, "https://evil.example")),
        "dnt": draw(mostly(None, "1")),
    }


def _recommend(client, req: dict, site_key: str):
    site = site_key if req["site_known"] else "unknown-key"
    query = list(req["query"])
    headers = {k: v for k, v in (("Origin", req["origin"]), ("DNT", req["dnt"])) if v is not None}
    if req["site_in"] == "query":
        query.append(("site", site))
    elif req["site_in"] == "header":
        headers["X-Site-Key"] = site
    return client.get("/v1/recommend", query_string=query, headers=headers)


@pytest.fixture
def viewed(app, acme, acme_catalog):
    client = app.test_client()
    views = [event("product_view", product_id=f"p{i % 5}") for i in range(12)]
    client.post("/v1/collect", json={"site": acme["site_key"], "visitor": "v1", "events": views})
    return acme


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(req=recommend_queries())
def test_recommend_answers_match_flask(both, viewed, req):
    lane_client, flask_client, _ = both
    via_lane = _recommend(lane_client, req, viewed["site_key"])
    via_flask = _recommend(flask_client, req, viewed["site_key"])
    # Tokens carry the second they were issued in; every offer must have one.
    _same_answer(via_lane, via_flask, ignore=("token",))
    hyp_event(f"status {via_lane.status_code}")


# -- refusals and failures ------------------------------------------------------------------


def test_rate_limit_refusal_matches_flask(both, r, acme_catalog):
    lane_client, flask_client, handed = both
    tight = create_tenant(r, "tight", [ALLOWED], rate_limit=1)
    body = {"site": tight["site_key"], "visitor": "v1", "events": [event()]}
    # The limit counts per second: keep going until both sends land in an exhausted second.
    for _ in range(20):
        via_lane = lane_client.post("/v1/collect", json=body, headers={"Origin": ALLOWED})
        via_flask = flask_client.post("/v1/collect", json=body, headers={"Origin": ALLOWED})
        if via_lane.status_code == via_flask.status_code == 429:
            break
    assert via_lane.status_code == 429
    _same_answer(via_lane, via_flask)
    assert via_lane.headers["Retry-After"] == "1"
    assert handed == []


def test_unexpected_failure_is_a_logged_500_without_trace(both, acme, monkeypatch, caplog):
    # A bug below the endpoint (not a domain error nor the store away): both paths log it and
    # answer the same 500 without a trace.
    from clickstream.ingest import Ingestor

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Ingestor, "ingest", broken)
    lane_client, flask_client, _ = both
    body = {"site": acme["site_key"], "visitor": "v1", "events": [event()]}
    with caplog.at_level(logging.ERROR, logger="offerwise.errors"):
        via_lane = lane_client.post("/v1/collect", json=body, headers={"Origin": ALLOWED})
    via_flask = flask_client.post("/v1/collect", json=body, headers={"Origin": ALLOWED})
    assert via_lane.status_code == 500
    _same_answer(via_lane, via_flask)
    assert "Traceback" not in via_lane.get_data(as_text=True)
    assert any(rec.exc_info for rec in caplog.records)


class _Disconnected(io.BytesIO):
    """A WSGI input whose client went away: gunicorn's body reader raises an OSError."""

    def read(self, size: int | None = -1) -> bytes:
        raise OSError("client disconnected")


@pytest.mark.parametrize("stream", [io.BytesIO(b'{"site": "k", "visi'), _Disconnected()])
def test_a_body_cut_short_is_flasks_400(both, stream):
    client, _, handed = both
    res = client.post(
        "/v1/collect",
        content_type="text/plain",
        environ_overrides={"CONTENT_LENGTH": "4000", "wsgi.input": stream},
    )
    assert res.status_code == 400, res.get_data()
    assert handed == ["POST /v1/collect"]
