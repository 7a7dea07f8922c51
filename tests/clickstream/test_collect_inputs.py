"""Collect inputs at the edges: lone surrogates, URLs with secrets, events without a client time.

Each request is sent twice: through the app as served (app.fast_lane first) and straight to
Flask's view (``FastLane.flask_wsgi``), since both must answer every input.
"""

from __future__ import annotations

import json
import time

import orjson
import pytest
from werkzeug.test import Client

from store import keys
from tests.helpers import event

ORIGIN = {"Origin": "https://shop.example"}
LONE = "\ud800"


def stream_events(r, tenant: str = "acme") -> list[dict]:
    return [orjson.loads(fields[b"e"]) for _, fields in r.xrange(keys.event_stream(tenant))]


@pytest.fixture(params=["lane", "flask"])
def sender(request, app):
    """A client through the lane, or one straight to Flask."""
    if request.param == "lane":
        return app.test_client()
    return Client(app.wsgi_app.flask_wsgi)


def post_collect(client, body: dict):
    # orjson refuses to write a lone surrogate; the standard library escapes it, as a browser's
    # JSON.stringify does.
    data = json.dumps(body).encode()
    return client.post("/v1/collect", data=data, content_type="text/plain", headers=ORIGIN)


@pytest.mark.parametrize(
    ("etype", "field"),
    [
        ("search", "query"),
        ("identify", "customer_id"),
        ("page_view", "url"),
        ("page_view", "referrer"),
        ("zip", "zip"),
        ("product_view", "category"),
        ("page_view", "page_type"),
        ("offer_click", "placement"),
        ("offer_click", "token"),
    ],
)
def test_a_lone_surrogate_rejects_only_its_event(sender, r, acme, etype, field):
    good = event()
    bad = event(etype, **{field: f"a{LONE}b"})
    body = {"site": acme["site_key"], "visitor": "v1", "events": [bad, good]}
    res = post_collect(sender, body)
    assert res.status_code == 200, res.get_data()
    assert res.json["accepted"] == 1
    [rejected] = res.json["rejected"]
    assert (rejected["index"], rejected["id"], rejected["field"]) == (0, bad["id"], field)
    assert "surrogate" in rejected["reason"]
    assert [e["id"] for e in stream_events(r)] == [good["id"]]


def test_a_lone_surrogate_in_an_event_id_is_not_echoed(sender, r, acme):
    good = event()
    bad = {**event(), "id": f"x{LONE}"}
    res = post_collect(sender, {"site": acme["site_key"], "visitor": "v1", "events": [bad, good]})
    assert res.status_code == 200, res.get_data()
    assert res.json["rejected"] == [
        {"index": 0, "id": None, "field": "id", "reason": res.json["rejected"][0]["reason"]}
    ]
    assert [e["id"] for e in stream_events(r)] == [good["id"]]


def test_a_lone_surrogate_everywhere_is_a_422_not_a_500(sender, r, acme):
    bad = event("search", query=LONE)
    res = post_collect(sender, {"site": acme["site_key"], "visitor": "v1", "events": [bad]})
    assert res.status_code == 422 and res.json["message"].startswith("events.0.query:")
    res = post_collect(sender, {"site": f"k{LONE}", "visitor": "v1", "events": [event()]})
    assert res.status_code == 422 and res.json["message"].startswith("site:")
    assert r.xlen(keys.event_stream("acme")) == 0


def test_a_surrogate_pair_is_a_character_like_any_other(sender, r, acme):
    smile = "\ud83d\ude00"  # an escaped pair is valid JSON for U+1F600
    res = post_collect(
        sender,
        {"site": acme["site_key"], "visitor": "v1", "events": [event("search", query=smile)]},
    )
    assert res.status_code == 200 and res.json["accepted"] == 1
    assert stream_events(r)[0]["query"] == "\U0001f600"


def test_erase_refuses_a_lone_surrogate_naming_the_field(client, acme):
    res = client.post(
        "/v1/admin/erase",
        data=json.dumps({"customer_id": f"c{LONE}"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {acme['admin_key']}"},
    )
    assert res.status_code == 422, res.get_data()
    assert res.json["message"].startswith("customer_id:") and "surrogate" in res.json["message"]


# -- URLs keep scheme, host, port and path only ---------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("https://shop.example/x?email=a@b.c#frag", "https://shop.example/x"),
        ("https://user:pass@shop.example:8443/cart", "https://shop.example:8443/cart"),
        ("https://token@shop.example", "https://shop.example"),
        ("https://shop.example/a;jsessionid=SECRET/b", "https://shop.example/a/b"),
        ("https://shop.example/cart;jsessionid=SECRET?x=1", "https://shop.example/cart"),
        ("https://shop.example/p%3Femail=a%40b.c", "https://shop.example/p"),
        ("https://shop.example/p%3femail=x", "https://shop.example/p"),
        ("https://shop.example/p%23token=x", "https://shop.example/p"),
        ("https://a:b@shop.example/p;s=1%3Fq#f", "https://shop.example/p"),
        ("/relative/path;sid=1?x", "/relative/path"),
        ("https://shop.example/ok/path%20with%20spaces", "https://shop.example/ok/path%20with%20spaces"),
    ],
)  # fmt: skip
def test_urls_are_stored_without_credentials_parameters_or_query(sender, r, acme, sent, stored):
    e = event("page_view", url=sent, referrer=sent)
    res = post_collect(sender, {"site": acme["site_key"], "visitor": "v1", "events": [e]})
    assert res.status_code == 200 and res.json["accepted"] == 1, res.get_data()
    [kept] = stream_events(r)
    assert (kept["url"], kept["referrer"]) == (stored, stored)


# -- the client time is optional ------------------------------------------------------------


def test_an_event_without_ts_takes_the_receive_time(sender, r, acme):
    given = event()
    bare = event("page_view")
    del bare["ts"]
    before = int(time.time() * 1000)
    res = post_collect(sender, {"site": acme["site_key"], "visitor": "v1", "events": [bare, given]})
    after = int(time.time() * 1000)
    assert res.status_code == 200 and res.json == {
        "accepted": 2, "duplicates": 0, "rejected": [], "profile": True
    }  # fmt: skip
    stored = {e["id"]: e for e in stream_events(r)}
    assert before <= stored[bare["id"]]["ts"] <= after
    assert type(stored[bare["id"]]["ts"]) is int
    assert stored[given["id"]]["ts"] == given["ts"]  # the client's time is kept


@pytest.mark.parametrize(
    ("ts", "reason"), [(None, "null"), (1_700_000_000, "2000"), ("1", "integer")]
)
def test_a_given_ts_is_still_checked(sender, r, acme, ts, reason):
    res = post_collect(
        sender, {"site": acme["site_key"], "visitor": "v1", "events": [event(ts=ts)]}
    )
    assert res.status_code == 422 and res.json["message"].startswith("events.0.ts:")
    assert reason in res.json["message"]


def test_the_openapi_document_says_ts_is_optional(client):
    event_schema = client.get("/v1/openapi.json").json["components"]["schemas"]["Event"]
    assert "ts" not in event_schema["required"]
    assert "receive" in event_schema["properties"]["ts"]["description"]
