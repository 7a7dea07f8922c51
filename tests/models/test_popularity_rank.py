"""The cold-start ranking stops early, and gives exactly what scoring every candidate gives."""

from __future__ import annotations

from operator import itemgetter

from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.profiles import VisitorProfile
from models.popularity import AFFINITY_BOOST, CANDIDATE_PAD, PopularityRecommender

CATEGORIES = ("bags", "hats", "shoes", "toys")


def reference(products, popular, profile, blocked, n):
    """The first n + CANDIDATE_PAD offerable products, boosted, sorted (stable): no shortcut."""
    top = popular[0][1] or 1.0
    scored = []
    for pid, stored in popular:
        product = products.get(pid)
        if product is None or pid in blocked or not product.get("active", True):
            continue
        affinity = profile.affinities.get(product["category"], 0.0)
        scored.append(((stored / top) * (1.0 + AFFINITY_BOOST * affinity), product["product_id"]))
        if len(scored) == n + CANDIDATE_PAD:
            break
    scored.sort(key=itemgetter(0), reverse=True)
    return [(pid, score) for score, pid in scored[:n]]


@st.composite
def worlds(draw):
    size = draw(st.integers(1, 120))
    products = {
        f"p{i}": {
            "product_id": f"p{i}",
            "name": f"P{i}",
            "category": draw(st.sampled_from(CATEGORIES)),
            "price": 1.0,
            "active": draw(st.booleans()) or draw(st.booleans()),
        }
        for i in range(size)
    }
    # Popularity in descending order with ties, some ids not (or no longer) in the catalog.
    scores = sorted(
        draw(
            st.lists(
                st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.5, 10.0]), min_size=1, max_size=160
            )
        ),
        reverse=True,
    )
    popular = [(f"p{draw(st.integers(0, size + 5))}", s) for s in scores]
    blocked = set(draw(st.lists(st.sampled_from(sorted(products)), max_size=10)))
    weights = draw(st.dictionaries(st.sampled_from(CATEGORIES), st.floats(0.01, 1.0), max_size=4))
    total = sum(weights.values()) or 1.0
    profile = VisitorProfile("v", affinities={c: w / total for c, w in weights.items()})
    return products, popular, profile, blocked, draw(st.integers(1, 12))


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_early_stop_ranks_exactly_as_scoring_every_candidate(world) -> None:
    products, popular, profile, blocked, n = world
    got = PopularityRecommender._rank(products, popular, profile, blocked, n)
    assert [(o.product["product_id"], o.score) for o in got] == reference(
        products, popular, profile, blocked, n
    )
