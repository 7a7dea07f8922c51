"""identify: behaviour carries over between a customer's devices; raw ids never stored."""

from __future__ import annotations

from clickstream.profiles import read_profile, with_identity
from tests.helpers import batch, event


def post(client, site, visitor, *events):
    res = client.post("/v1/collect", json=batch(site, visitor, list(events)))
    assert res.status_code == 200, res.json
    return res


def test_identified_customer_profile_spans_devices(client, r, acme, acme_catalog):
    site = acme["site_key"]
    # Laptop: browses bags (p1, p4), carts p7, then logs in.
    post(
        client,
        site,
        "laptop",
        event(product_id="p1"),
        event(product_id="p4"),
        event("add_to_cart", product_id="p7"),
        event("identify", customer_id="C-42"),
    )
    # Phone: anonymous at first, knows nothing of the laptop.
    post(client, site, "phone", event("page_view"))
    assert read_profile(r, "acme", "phone").affinities == {}
    post(client, site, "phone", event("identify", customer_id="C-42"))
    merged = with_identity(r, "acme", read_profile(r, "acme", "phone"))
    assert merged.cart == {"p7"}
    assert set(merged.recent) == {"p1", "p4"}
    assert max(merged.affinities, key=merged.affinities.get) == "bags"
    offers = client.get(f"/v1/recommend?site={site}&visitor=phone&n=11").json["offers"]
    assert "p7" not in {o["product_id"] for o in offers}  # in the customer's cart on the laptop
    # Another customer's devices stay apart.
    post(client, site, "tablet", event("identify", customer_id="C-43"))
    assert with_identity(r, "acme", read_profile(r, "acme", "tablet")).cart == set()
