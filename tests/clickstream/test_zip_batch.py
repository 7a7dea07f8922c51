"""Issue 13 item 2: a ``zip`` event counts for the events sent with it in the same batch (its
segment's popularity gets their credit), not only for the batches after it."""

from __future__ import annotations

import time

import redis

from clickstream.decay import growth
from clickstream.ingest import Ingestor, segment_popularity_key
from clickstream.profiles import read_profile
from store.tenants import create_tenant, get_tenant


def _tenant(r: redis.Redis):
    create_tenant(r, "shop", ["https://shop.example"], rate_limit=1_000_000)
    tenant = get_tenant(r, "shop")
    assert tenant is not None
    return tenant


def _event(i: int, type_: str, **fields: object) -> dict:
    return {"id": f"e{i}", "type": type_, "ts": int(time.time() * 1000), **fields}


def test_the_zip_of_a_batch_credits_its_segment_with_the_batch_events(r: redis.Redis) -> None:
    tenant = _tenant(r)
    calls = []

    def on_zip(zip_code: str, country: str) -> dict:
        calls.append(zip_code)
        return {"status": "ok", "segment_id": 4, "zip": zip_code}

    now = time.time()
    events = [
        _event(1, "product_view", product_id="p1", category="kids"),
        _event(2, "zip", zip="10001", country="US"),
        _event(3, "add_to_cart", product_id="p2", category="kids"),
    ]
    Ingestor(r).ingest(tenant, "v1", events, on_zip=on_zip, now=now)
    seg = {
        k.decode(): v
        for k, v in r.zrange(segment_popularity_key("shop", 4), 0, -1, withscores=True)
    }
    assert seg == {"p1": 1 * growth(now), "p2": 3 * growth(now)}
    assert calls == ["10001"]  # enriched once, used for the batch and the profile
    assert read_profile(r, "shop", "v1").attributes.get("zip_segment_id") == "4"
    # The next batch finds the segment on the profile, as before.
    Ingestor(r).ingest(
        tenant, "v1", [_event(4, "product_view", product_id="p3")], on_zip=on_zip, now=now
    )
    assert r.zscore(segment_popularity_key("shop", 4), "p3") == 1 * growth(now)


def test_without_a_zip_no_segment_is_credited(r: redis.Redis) -> None:
    tenant = _tenant(r)
    Ingestor(r).ingest(tenant, "v2", [_event(1, "product_view", product_id="p1")], now=time.time())
    assert not r.keys("*:seg:*")
