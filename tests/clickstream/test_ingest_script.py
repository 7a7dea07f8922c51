"""The ingest script aggregates per batch; these pin it to the per-event semantics it replaced.

A Python model applies each accepted event on its own (LREM + LPUSH + LTRIM per view, one
ZINCRBY per weighted event, ...); any split of the same events into batches must leave Redis
in the state the model predicts. Also: every key the script creates expires.
"""

from __future__ import annotations

import itertools
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream.decay import growth
from clickstream.ingest import (
    DAY_S,
    DEDUPE_DAYS,
    WEIGHTS,
    Ingestor,
    dedupe_key,
    popularity_key,
    stats_key,
)
from clickstream.profiles import RECENT_ITEMS, read_profile, visitor_keys
from store.tenants import create_tenant, get_tenant

PRODUCTS = [f"p{i}" for i in range(6)]
CATEGORY = {pid: ["shoes", "bags", "hats"][i % 3] for i, pid in enumerate(PRODUCTS)}
TYPES = ["product_view", "add_to_cart", "purchase", "page_view", "offer_click", "remove_from_cart"]
_ids = itertools.count()


def _model(events: list[dict]) -> dict:
    recent: list[str] = []
    cart: set[str] = set()
    pop: dict[str, float] = {}
    aff: dict[str, float] = {}
    counters: dict[str, int] = {}
    for e in events:
        t, pid = e["type"], e.get("product_id")
        counters[t] = counters.get(t, 0) + 1
        if pid is None:
            continue
        w = WEIGHTS.get(t)
        if w:
            pop[pid] = pop.get(pid, 0) + w
            aff[CATEGORY[pid]] = aff.get(CATEGORY[pid], 0) + w
        if t == "product_view":
            recent = [pid] + [p for p in recent if p != pid]
            recent = recent[:RECENT_ITEMS]
        elif t == "add_to_cart":
            cart.add(pid)
        elif t in ("remove_from_cart", "purchase"):
            cart.discard(pid)
    return {"recent": recent, "cart": cart, "pop": pop, "aff": aff, "counters": counters}


def _event(t: str, pid: str) -> dict:
    e = {"id": f"s{next(_ids)}", "type": t, "ts": int(time.time() * 1000)}
    if t != "page_view":
        e["product_id"] = pid
    return e


@pytest.fixture
def shop(r: redis.Redis):
    from clickstream import catalog

    create_tenant(r, "agg", rate_limit=10**9)
    catalog.replace_catalog(r, "agg", [
        {"product_id": pid, "name": pid, "category": CATEGORY[pid], "price": 1.0, "active": True}
        for pid in PRODUCTS
    ])  # fmt: skip
    return get_tenant(r, "agg")


events_st = st.lists(
    st.tuples(st.sampled_from(TYPES), st.sampled_from(PRODUCTS)), min_size=1, max_size=40
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=events_st, cut=st.lists(st.integers(1, 8), min_size=1, max_size=10))
def test_any_batching_matches_per_event_semantics(r, shop, raw, cut):
    r.delete(*visitor_keys("agg", "v").values(), popularity_key("agg"))
    events = [_event(t, pid) for t, pid in raw]
    ingestor = Ingestor(r)
    now = time.time()
    batches, i = [], 0
    for size in itertools.cycle(cut):
        if i >= len(events):
            break
        batches.append(events[i : i + size])
        i += size
    for b in batches:
        ingestor.ingest(shop, "v", b, now=now)
    # A retried batch changes nothing.
    ingestor.ingest(shop, "v", batches[0], now=now)
    want = _model(events)
    profile = read_profile(r, "agg", "v")
    assert profile.recent == want["recent"]
    assert profile.cart == want["cart"]
    assert profile.counters == want["counters"]
    assert "ttl_at" not in profile.attributes  # housekeeping stays out of features
    g = growth(now)
    pop = {k.decode(): v for k, v in r.zrange(popularity_key("agg"), 0, -1, withscores=True)}
    assert pop == pytest.approx({k: w * g for k, w in want["pop"].items()}, rel=1e-9)
    total = sum(want["aff"].values())
    if total:
        assert profile.affinities == pytest.approx({c: w / total for c, w in want["aff"].items()})


def test_every_key_the_script_creates_expires(r, shop):
    ingestor = Ingestor(r)
    now = time.time()
    ingestor.ingest(shop, "late", [_event("page_view", "p0")], now=now)
    # Within the refresh interval the profile is not re-expired as a whole: keys created by
    # later batches must still get their own TTL.
    ingestor.ingest(
        shop, "late", [_event("product_view", "p1"), _event("add_to_cart", "p2")], now=now + 5
    )
    ingestor.ingest(shop, "late", [_event("purchase", "p3")], now=now + 9)
    vk = visitor_keys("agg", "late")
    for part in ("profile", "recent", "cart", "bought", "aff"):
        assert r.exists(vk[part]), part
        assert r.ttl(vk[part]) > 0, f"{part} has no expiry"
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    assert r.ttl(stats_key("agg", day)) > 0


def test_retries_are_recognised_for_at_least_48_hours_in_one_hash_per_visitor_day(
    r: redis.Redis,
) -> None:
    create_tenant(r, "dd", rate_limit=0)
    tenant = get_tenant(r, "dd")
    ingestor = Ingestor(r)
    # Late in a (future) day: the hardest case for day-sized dedupe hashes.
    first_day = int(time.time() // DAY_S) + 1
    t0 = first_day * DAY_S + 23.9 * 3600
    e = {"id": "retry-me", "type": "page_view", "ts": int(t0 * 1000)}
    first = ingestor.ingest(tenant, "v", [e, dict(e)], now=t0)
    assert (len(first.accepted), first.duplicates) == (1, 1)  # a copy within the batch
    for later_s in (1, 3600, 24 * 3600, 48 * 3600):
        assert ingestor.ingest(tenant, "v", [e], now=t0 + later_s).duplicates == 1, later_s
    assert len(ingestor.ingest(tenant, "v", [e], now=t0 + 73 * 3600).accepted) == 1
    # Another visitor's id space is its own.
    assert len(ingestor.ingest(tenant, "v:2", [e], now=t0).accepted) == 1
    # One hash per visitor and day, expiring once no batch checks it any more.
    days = range(first_day - 1, first_day + 6)
    assert [d for d in days if r.exists(dedupe_key("dd", "v", d))] == [first_day, first_day + 4]
    assert r.hlen(dedupe_key("dd", "v", first_day)) == 1
    forget_at = (first_day + DEDUPE_DAYS) * DAY_S
    assert abs(r.ttl(dedupe_key("dd", "v", first_day)) - (forget_at - time.time())) < 5


def test_a_batch_is_answered_with_the_campaigns_version_it_was_stored_under(r, shop):
    """Collect's campaign half reloads the tenant's campaigns when their version moves; the
    ingest script reads that version in the batch's own call, so it costs no round trip."""
    from store import keys

    ingestor = Ingestor(r)
    first = ingestor.ingest(shop, "cv", [_event("page_view", "p0"), _event("add_to_cart", "p1")])
    assert first.campaigns_version == 0 and len(first.accepted) == 2
    r.incrby(keys.campaigns_version("agg"), 3)
    again = ingestor.ingest(shop, "cv", [_event("purchase", "p1")])
    assert again.campaigns_version == 3 and len(again.accepted) == 1
