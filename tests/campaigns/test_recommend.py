"""GET/POST /v1/recommend: the popularity baseline, with the rules every offer list obeys."""

from __future__ import annotations

import pytest

from campaigns import tokens
from store.tenants import get_tenant
from tests.helpers import batch, event


def send(client, site: str, visitor: str, *events: dict) -> None:
    res = client.post("/v1/collect", json=batch(site, visitor, list(events)))
    assert res.status_code == 200, res.json


@pytest.fixture
def traffic(client, acme, acme_catalog):
    """p3 is the hit (bought a lot), p6 carted often, p9 viewed a little."""
    for i in range(5):
        send(
            client,
            acme["site_key"],
            f"crowd{i}",
            event("purchase", product_id="p3"),
            event("add_to_cart", product_id="p6"),
        )
    send(client, acme["site_key"], "crowd9", event("product_view", product_id="p9"))
    send(client, acme["site_key"], "crowd9", event("product_view", product_id="p11"))  # inactive


def test_ranks_by_decayed_popularity(client, acme, traffic):
    # p3, p6 and p9 share a category: allow three of it (the default cap is 2, see below).
    rules = client.put("/v1/admin/rules", json={"max_per_category": 3},
                       headers={"Authorization": f"Bearer {acme['admin_key']}"})  # fmt: skip
    assert rules.status_code == 200, rules.json
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=newbie&n=3")
    assert res.status_code == 200, res.json
    offers = res.json["offers"]
    assert [o["product_id"] for o in offers] == ["p3", "p6", "p9"]
    assert offers[0]["score"] == pytest.approx(1.0)
    assert offers[0]["score"] > offers[1]["score"] > offers[2]["score"] > 0
    assert offers[0]["name"] == "Product 3" and offers[0]["reason"]
    assert res.json["source"] == "popularity"


def test_popularity_keeps_the_rules_category_cap(client, acme, traffic):
    """Issue 13 item 4: the popularity path applies the model path's rules."""
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=newbie&n=3")
    assert [o["product_id"] for o in res.json["offers"]][:2] == ["p3", "p6"]
    categories = [o["category"] for o in res.json["offers"]]
    assert max(categories.count(c) for c in categories) <= 2


def _no_category_cap(client, acme) -> None:
    res = client.put("/v1/admin/rules", json={"max_per_category": 50},
                     headers={"Authorization": f"Bearer {acme['admin_key']}"})  # fmt: skip
    assert res.status_code == 200, res.json


def test_never_offers_cart_or_recent_purchase_or_inactive_or_excluded(client, acme, traffic):
    _no_category_cap(client, acme)  # so every offerable product can be listed
    send(
        client,
        acme["site_key"],
        "shopper",
        event("purchase", product_id="p3"),
        event("add_to_cart", product_id="p6"),
    )
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=shopper&n=10&exclude=p9,p0")
    ids = [o["product_id"] for o in res.json["offers"]]
    assert len(ids) == 7  # 12 products less cart, bought, inactive and 2 excluded
    assert not {"p3", "p6", "p9", "p0", "p11"} & set(ids)
    assert len(ids) == len(set(ids))


def test_category_affinity_lifts_browsed_category(client, acme, traffic):
    # Categories cycle shoes, bags, hats by product index: p1 and p4 are bags, the hits are shoes.
    for _ in range(4):
        send(client, acme["site_key"], "bagfan", event("product_view", product_id="p4"))
    send(client, acme["site_key"], "crowd-bag", event("product_view", product_id="p1"))
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=bagfan&n=4")
    offers = {o["product_id"]: o for o in res.json["offers"]}
    anon = {
        o["product_id"]: o
        for o in client.get(f"/v1/recommend?site={acme['site_key']}&visitor=x&n=4").json["offers"]
    }
    assert offers["p1"]["score"] > anon["p1"]["score"]
    assert offers["p1"]["reason_code"] == "category_affinity"


def test_cold_tenant_falls_back_to_catalog(client, acme, acme_catalog):
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=v&n=5")
    assert res.status_code == 200
    offers = res.json["offers"]
    assert len(offers) == 5 and {o["reason_code"] for o in offers} == {"catalog"}


def test_tokens_are_signed_for_the_tenant(client, r, acme, traffic):
    offer = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=v7&n=1").json["offers"][0]
    tenant = get_tenant(r, "acme")
    content = tokens.verify(tenant, offer["token"], offer["product_id"])
    assert content.product_id == offer["product_id"] and content.visitor == "v7"
    for forged in (offer["token"][:-2] + "AA", "garbage", "a.b.c", "\ud800.x"):
        with pytest.raises(tokens.TokenRefused, match="not issued for this site"):
            tokens.verify(tenant, forged)
    with pytest.raises(tokens.TokenRefused, match="issued for product"):
        tokens.verify(tenant, offer["token"], "some-other-product")
    with pytest.raises(tokens.TokenRefused, match="expired"):
        tokens.verify(tenant, offer["token"], now=content.issued + tokens.TOKEN_TTL_S + 1)


def test_post_body_variant(client, acme, traffic):
    res = client.post(
        "/v1/recommend", json={"site": acme["site_key"], "visitor": "v1", "n": 2, "exclude": ["p3"]}
    )
    assert res.status_code == 200
    assert [o["product_id"] for o in res.json["offers"]] == ["p6", "p9"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("visitor=v1&n=0", 422, "n"),
        ("visitor=v1&n=51", 422, "n"),
        ("visitor=v1&n=abc", 422, "n"),
        ("n=3", 422, "visitor"),
        ("visitor=" + "x" * 65, 422, "visitor"),
        ("visitor=v1&exclude=" + ",".join(f"p{i}" for i in range(51)), 422, "exclude"),
    ],
)
def test_bad_arguments(client, acme, query, status, field):
    res = client.get(f"/v1/recommend?site={acme['site_key']}&{query}")
    assert res.status_code == status
    assert res.json["message"].startswith(field)


def test_wrong_key_origin_and_isolation(client, r, acme, traffic):
    from store.tenants import create_tenant

    other = create_tenant(r, "otherco", [], 100)
    assert client.get("/v1/recommend?site=nope&visitor=v").status_code == 401
    res = client.get(
        f"/v1/recommend?site={acme['site_key']}&visitor=v",
        headers={"Origin": "https://evil.example"},
    )
    assert res.status_code == 403
    # otherco has no catalog and no traffic: nothing of acme's may leak into its offers.
    res = client.get(f"/v1/recommend?site={other['site_key']}&visitor=v&n=5")
    assert res.status_code == 200 and res.json["offers"] == []


def test_dnt_visitor_gets_contextual_offers_only(client, acme, traffic):
    send(client, acme["site_key"], "dnt", event("add_to_cart", product_id="p3"))
    res = client.get(f"/v1/recommend?site={acme['site_key']}&visitor=dnt&n=1", headers={"DNT": "1"})
    assert res.json["profile"] is False
    assert res.json["offers"][0]["product_id"] == "p3"  # the profile (cart) is not read


def test_cors_headers_for_allowed_origin_and_preflight(client, acme):
    site = acme["site_key"]
    ok = client.get(
        f"/v1/recommend?site={site}&visitor=v", headers={"Origin": "https://shop.example"}
    )
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    pre = client.options(
        f"/v1/collect?site={site}",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    bad = client.options(
        f"/v1/collect?site={site}",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in bad.headers
