"""Offer ranking rules on their own (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from campaigns.rules import DEFAULT_RULES, load_rules, save_rules
from models.ranking import Context, rank

CATALOG = {
    "a": {"product_id": "a", "category": "x", "price": 10.0, "margin": 5.0},
    "b": {"product_id": "b", "category": "x", "price": 100.0, "margin": 1.0},
    "c": {"product_id": "c", "category": "x", "price": 50.0, "margin": 4.0},
    "d": {"product_id": "d", "category": "y", "price": 20.0, "margin": None},
    "e": {"product_id": "e", "category": "y", "price": 30.0, "margin": 3.0, "active": False},
}
IDS = list(CATALOG)


def test_expected_value_orders_by_score_times_margin():
    scores = np.array([0.5, 0.9, 0.4, 0.1, 0.99])
    got = rank(IDS, scores, CATALOG, {**DEFAULT_RULES, "max_per_category": 5}, Context(), 5)
    # values: a 2.5, b 0.9, c 1.6, d 0.1*20 (no margin -> price) = 2.0; e inactive
    assert [r.product_id for r in got] == ["a", "d", "c", "b"]
    price = rank(
        IDS,
        scores,
        CATALOG,
        {**DEFAULT_RULES, "weight": "price", "max_per_category": 5},
        Context(),
        5,
    )
    assert price[0].product_id == "b"


def test_blocked_diversity_and_pins():
    scores = np.array([0.5, 0.9, 0.4, 0.1, 0.99])
    got = rank(
        IDS,
        scores,
        CATALOG,
        {**DEFAULT_RULES, "max_per_category": 1, "pinned": ["b"]},
        Context(blocked={"a"}),
        5,
    )
    assert [r.product_id for r in got] == ["b", "d"]
    assert got[0].reason_code == "pinned"


def test_eligibility_by_audience_segment_state():
    rules = {
        **DEFAULT_RULES,
        "max_per_category": 5,
        "products": {
            "a": {"audience": "identified"},
            "b": {"segments": [3]},
            "c": {"states": ["NY"]},
            "d": {"audience": "anonymous"},
        },
    }
    scores = np.ones(5)
    anon = {r.product_id for r in rank(IDS, scores, CATALOG, rules, Context(), 5)}
    assert anon == {"d"}
    known = {
        r.product_id
        for r in rank(
            IDS, scores, CATALOG, rules, Context(identified=True, segment=3, state="ny"), 5
        )
    }
    assert known == {"a", "b", "c"}


@given(
    st.lists(st.floats(min_value=0, max_value=1), min_size=5, max_size=5),
    st.integers(1, 5),
    st.integers(1, 3),
)
def test_invariants(scores, n, cap):
    got = rank(
        IDS,
        np.array(scores),
        CATALOG,
        {**DEFAULT_RULES, "max_per_category": cap},
        Context(blocked={"c"}),
        n,
    )
    ids = [r.product_id for r in got]
    assert len(ids) == len(set(ids)) <= n
    assert "c" not in ids and "e" not in ids
    for category in ("x", "y"):
        assert sum(CATALOG[p]["category"] == category for p in ids) <= cap
    values = [r.value for r in got]
    assert values == sorted(values, reverse=True)


def test_rules_are_validated_and_stored(r):
    saved = save_rules(
        r,
        "acme",
        {"weight": "price", "products": {"p1": {"audience": "identified", "states": ["NY"]}}},
    )
    assert load_rules(r, "acme") == saved and saved["max_per_category"] == 2
    with pytest.raises(ValidationError) as err:
        save_rules(r, "acme", {"weight": "profit"})
    assert "weight" in err.value.messages
    with pytest.raises(ValidationError):
        save_rules(r, "acme", {"products": {"p1": {"audience": "robots"}}})


def test_rules_api(client, acme):
    auth = {"Authorization": f"Bearer {acme['admin_key']}"}
    res = client.put(
        "/v1/admin/rules", json={"max_per_category": 1, "pinned": ["p1"]}, headers=auth
    )
    assert res.status_code == 200 and res.json["pinned"] == ["p1"]
    assert client.get("/v1/admin/rules", headers=auth).json["max_per_category"] == 1
    bad = client.put("/v1/admin/rules", json={"max_per_category": 0}, headers=auth)
    assert bad.status_code == 422 and bad.json["message"].startswith("max_per_category")
