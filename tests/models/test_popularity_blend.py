"""Issue 13 items 2 and 4: cold start blends segment popularity with global popularity by
shrinkage, and the popularity path applies the model path's rules (category cap, eligibility,
exclusions)."""

from __future__ import annotations

import pytest
import redis

from clickstream.decay import growth
from clickstream.ingest import segment_popularity_key
from clickstream.profiles import VisitorProfile
from models.popularity import SHRINKAGE_EVENTS, PopularitySnapshots, blend, popularity_offers
from models.ranking import Context

NOW = 1_800_000_000.0
CATALOG = {
    pid: {"product_id": pid, "name": pid, "category": cat, "price": 10.0, "active": True}
    for pid, cat in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b"), ("c1", "c")]
}
ACTIVE = tuple(CATALOG)
GLOBAL = [("a1", 100.0), ("a2", 90.0), ("a3", 80.0), ("b1", 50.0), ("b2", 40.0), ("c1", 10.0)]


def test_a_segment_with_few_events_leans_on_the_global_list() -> None:
    g = growth(NOW)
    few = [("c1", 5.0 * g)]  # five weighted events
    ranked, weight = blend(few, GLOBAL, NOW)
    assert weight == pytest.approx(5.0 / (5.0 + SHRINKAGE_EVENTS))
    assert ranked[0][0] == "a1"  # the global favourite still leads
    assert [p for p, _ in ranked].index("c1") < [p for p, _ in GLOBAL].index("c1")  # moved up
    many = [("c1", 500.0 * g), ("b2", 100.0 * g)]
    ranked, weight = blend(many, GLOBAL, NOW)
    assert weight > 0.9 and [p for p, _ in ranked[:2]] == ["c1", "b2"]


def test_an_empty_segment_is_the_global_list() -> None:
    ranked, weight = blend([], GLOBAL, NOW)
    assert weight == 0.0 and [p for p, _ in ranked] == [p for p, _ in GLOBAL]


def test_segment_popularity_counts_before_the_segment_holds_n_products(r: redis.Redis) -> None:
    # One product in the segment, three offers asked: the old rule ignored the segment.
    r.zadd(segment_popularity_key("t", 7), {"c1": 200.0 * growth(NOW)})
    snaps = PopularitySnapshots(0)
    offers = popularity_offers(
        r, snaps, "t", CATALOG, ACTIVE, GLOBAL, VisitorProfile("v"), set(), 3, segment=7, now=NOW
    )
    assert offers[0].product["product_id"] == "c1"
    assert offers[0].reason_code == "segment_popularity"


def test_popularity_applies_the_category_cap_eligibility_and_exclusions() -> None:
    rules = {"weight": "none", "max_per_category": 1, "pinned": [],
             "products": {"b1": {"audience": "identified"}}}  # fmt: skip
    ctx = Context(identified=False, blocked={"a1"})
    offers = popularity_offers(
        None, PopularitySnapshots(0), "t", CATALOG, ACTIVE, GLOBAL, VisitorProfile("v"),  # type: ignore[arg-type]
        {"a1"}, 3, rules=rules, ctx=ctx,
    )  # fmt: skip
    got = [o.product["product_id"] for o in offers]
    assert got == ["a2", "b2", "c1"]  # one per category, a1 excluded, b1 for identified only
