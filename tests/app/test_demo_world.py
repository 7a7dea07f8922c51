"""The demo's people (app/demo/world.py): the customers the shop lists to log in as can be
shown the running campaign's offer, whoever the campaign draws into which group."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from app.demo.setup import CAMPAIGN
from app.demo.world import generate, showcase
from enrichment.demographics import demographics
from enrichment.segments import segmentation
from store.config import Settings
from tests.synth_world import base_artifacts

OFFER = CAMPAIGN["offer"]["product_id"]


@pytest.fixture(scope="module")
def world(shared_data: Path, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = base_artifacts(shared_data, geo_dir, tmp_path_factory.getbasetemp())
    s = Settings(data_dir=data_dir, geo_dir=geo_dir)
    return generate(segmentation(s), demographics(s), now=time.time())


def _draws(salt: int):
    """A campaign's groups as one install's secret draws them (20% control, 5% holdout)."""

    def group_of(customer_id: str) -> str:
        u = int(hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()[:8], 16) / 2**32
        return "holdout" if u < 0.05 else "control" if u < 0.25 else "treated"

    return group_of


def test_listed_customers_never_had_the_offer_in_a_cart(world):
    """In the cart (or bought lately), the offer is never shown, so a listed customer who once
    put it in a cart would log in to no campaign: each install's draws list other people."""
    carts: dict[str, list[str]] = {}  # customer id -> products carted or bought on the shop
    for visitor, _, events in world.sessions:
        if visitor.startswith("demo-c"):
            carted = [e["product_id"] for e in events if e["type"] in ("add_to_cart", "purchase")]
            carts.setdefault("D-" + visitor.removeprefix("demo-c"), []).extend(carted)
    assert any(OFFER in c for c in carts.values())  # the seeded traffic does cart the offer
    listed = set()
    for salt in range(40):
        people = showcase(world, _draws(salt), OFFER)
        assert len(people) == len(world.segments)
        assert [p["campaign_group"] for p in people[:-1]] == ["treated"] * (len(people) - 1)
        for p in people:
            assert OFFER not in p["holdings"], p
            listed.add(p["customer_id"])
    assert not [c for c in sorted(listed) if OFFER in carts.get(c, [])]
