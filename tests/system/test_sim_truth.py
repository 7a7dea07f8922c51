"""The simulated shop's yardsticks (``bench/sim_world.py``), checked without a server: the best
slate given what the service sees of an anonymous visitor (``seen_best``) must use the views
and the ZIP it is given, and can never beat the truth's best."""

from __future__ import annotations

import numpy as np
import pytest

from bench.shared_data import shared_data
from bench.sim_world import (
    WorldParams,
    browse,
    click_prob,
    eligible_order,
    make_person,
    make_world,
    seen_best,
    session_liking,
)

SESSIONS = 200
SAMPLES = 5_000


@pytest.fixture(scope="module")
def slates() -> dict[str, np.ndarray]:
    world = make_world(WorldParams(zips=40, seed=5, categories=3), shared_data())
    out: dict[str, list[float]] = {k: [] for k in ("prior", "zip", "views", "both", "best")}
    for i in range(SESSIONS):
        person = make_person(world, customer=False)
        rng = np.random.default_rng([5, i])
        liking = session_liking(world, person, rng)
        views = browse(world, liking, int(rng.integers(1, 5)), rng)
        truth = click_prob(liking)

        def ctr(score: np.ndarray, truth=truth, person=person) -> float:
            return float(truth[eligible_order(world, person, score, set())].mean())

        draw = np.random.default_rng([5, i, 1])
        out["prior"].append(ctr(seen_best(world, [], None, draw, SAMPLES)))
        out["zip"].append(ctr(seen_best(world, [], person.zip_index, draw, SAMPLES)))
        out["views"].append(ctr(seen_best(world, views, None, draw, SAMPLES)))
        out["both"].append(ctr(seen_best(world, views, person.zip_index, draw, SAMPLES)))
        out["best"].append(ctr(liking))
    return {k: np.array(v) for k, v in out.items()}


def test_what_is_seen_raises_the_best_slate(slates):
    """Views say more than the ZIP (the age they hint at drives most of the liking), each
    says something, and both together the most."""
    mean = {k: v.mean() for k, v in slates.items()}
    assert mean["zip"] > mean["prior"] * 1.05, mean
    assert mean["views"] > mean["zip"], mean
    assert mean["both"] > max(mean["views"], mean["zip"]), mean
    assert mean["best"] > mean["both"] * 1.2, mean


def test_nothing_seen_beats_the_truth(slates):
    for k in ("prior", "zip", "views", "both"):
        assert (slates[k] <= slates["best"] + 1e-12).all(), k
