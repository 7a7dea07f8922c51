"""Drift (issue 13 item 8): training distributions, the live sample, PSI and calibration."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from models import drift
from models.serving import Bundle

FEATURES = ["age", "flag", "income", "sparse"]


def _training(n: int = 20_000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.normal(40, 12, n),
            (rng.random(n) < 0.3).astype(float),
            rng.lognormal(11, 0.5, n),
            np.where(rng.random(n) < 0.6, np.nan, rng.exponential(2.0, n)),
        ]
    ).astype(np.float32)
    return X


def _live_counts(reference: drift.Reference, X: np.ndarray) -> np.ndarray:
    counts = np.zeros((X.shape[1], drift.BINS), dtype=np.int64)
    for j in range(X.shape[1]):
        counts[j] = np.bincount(
            drift.bin_index(X[:, j].astype(np.float64), reference.edges[j]), minlength=drift.BINS
        )
    return counts


@dataclass
class Offer:
    score: float
    decile: int | None


def test_reference_bins_are_training_deciles_with_a_missing_bin(tmp_path) -> None:
    X = _training()
    ref = drift.Reference.from_training(X, FEATURES)
    assert ref.n_edges.tolist()[0] == 9 and ref.n_edges[1] == 2  # a flag: two values' bins
    np.testing.assert_allclose(ref.train_share.sum(axis=1), 1.0)
    assert ref.train_share[0, :10] == pytest.approx([0.1] * 10, abs=0.002)
    assert ref.train_share[3, drift.MISSING] == pytest.approx(0.6, abs=0.02)
    assert ref.train_share[1, :2] == pytest.approx([0.7, 0.3], abs=0.02)
    ref.save(tmp_path)
    back = drift.Reference.load(tmp_path)
    assert back is not None and back.features == FEATURES
    np.testing.assert_array_equal(back.edges, ref.edges)
    np.testing.assert_allclose(back.train_share, ref.train_share, atol=1e-6)
    assert drift.Reference.load(tmp_path / "missing") is None
    # Only the training rows count, at most REFERENCE_ROWS of them.
    rows = np.arange(0, len(X), 2)
    assert drift.Reference.from_training(X, FEATURES, rows=rows).rows == len(rows)


def test_psi_is_zero_for_identical_distributions_and_grows_with_a_shift() -> None:
    X = _training()
    ref = drift.Reference.from_training(X, FEATURES)
    same = _live_counts(ref, X)
    assert [drift.psi(ref.train_share[j], same[j]) for j in range(4)] == [0.0] * 4
    # A fresh sample of the same population: noise only.
    fresh = _live_counts(ref, _training(5000, seed=9))
    assert max(drift.psi(ref.train_share[j], fresh[j]) for j in range(4)) < 0.02
    # Ages shifted by a growing share of their standard deviation: PSI grows with it.
    values = []
    for shift in (0.0, 0.25, 0.5, 1.0, 2.0):
        live = _training(5000, seed=9)
        live[:, 0] += shift * 12
        values.append(drift.psi(ref.train_share[0], _live_counts(ref, live)[0]))
    assert values == sorted(values) and values[2] > drift.STABLE and values[3] > drift.SHIFTED
    # A flag that flips its rate, values that go missing: both read as shifted.
    flipped = _training(5000, seed=9)
    flipped[:, 1] = 1.0 - flipped[:, 1]
    flipped[:, 2] = np.nan
    counts = _live_counts(ref, flipped)
    assert drift.psi(ref.train_share[1], counts[1]) > drift.SHIFTED
    assert drift.psi(ref.train_share[2], counts[2]) > drift.SHIFTED
    assert math.isnan(drift.psi(ref.train_share[0], np.zeros(drift.BINS)))


def test_psi_matches_the_formula_by_hand() -> None:
    train = np.zeros(drift.BINS)
    train[:2] = [0.5, 0.5]
    live = np.zeros(drift.BINS, dtype=np.int64)
    live[:2] = [75, 25]
    want = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert drift.psi(train, live) == pytest.approx(want)


def test_live_sample_counts_one_in_n_and_flushes_to_redis(r) -> None:
    X = _training()
    ref = drift.Reference.from_training(X, FEATURES)
    live = drift.LiveSample("acme", "v1", ref, every=4, flush_s=10.0)
    t0 = 1000.0
    live._flushed = t0
    for i, x in enumerate(X[:4000]):
        live.observe(x, identified=i % 2 == 0, offers=[Offer(0.2, 1), Offer(0.05, 7)])
    assert not live.flush_if_due(r, now=t0 + 5)  # not yet due: nothing written
    assert r.exists(drift.keys.model_drift("acme", "v1")) == 0
    assert live.flush_if_due(r, now=t0 + 11)
    drift.wait_for_writes()  # written by this process's writer thread
    assert not live.flush_if_due(r, now=t0 + 30)  # nothing new sampled
    got = drift.read_live(r, "acme", "v1", len(FEATURES))
    # Every 4th call sampled; calls alternate identified/anonymous, so every 4th is anonymous.
    assert got["samples"] == {"i": 0, "a": 1000}
    assert got["counts"]["a"][0].sum() == 1000
    np.testing.assert_array_equal(got["counts"]["a"], _live_counts(ref, X[3:4000:4]))
    assert got["offers"][1] == 1000 and got["offers"][7] == 1000
    assert got["score_sum"][1] == pytest.approx(200.0) and got["score_sum"][7] == pytest.approx(
        50.0
    )
    assert r.ttl(drift.keys.model_drift("acme", "v1")) > 0
    report = drift.feature_drift(ref, got)
    assert report["identified"]["samples"] == 0 and report["all"]["samples"] == 1000
    assert report["all"]["max_psi"] < 0.05 and report["all"]["shifted"] == []
    assert {row["status"] for row in report["all"]["features"]} == {"stable"}


def test_a_shifted_live_population_is_reported_shifted(r) -> None:
    X = _training()
    ref = drift.Reference.from_training(X, FEATURES)
    live = drift.LiveSample("acme", "v2", ref, every=1, flush_s=0.0)
    shifted = _training(600, seed=4)
    shifted[:, 0] += 24  # two standard deviations older
    for x in shifted:
        live.observe(x, identified=True, offers=[])
    assert live.flush(r)
    assert not live.flush(r)  # nothing left
    report = drift.feature_drift(ref, drift.read_live(r, "acme", "v2", len(FEATURES)))
    assert report["identified"]["shifted"] == ["age"]
    assert report["identified"]["features"][0]["feature"] == "age"
    assert report["identified"]["features"][0]["psi"] > 1.0


def test_calibration_by_decile_matches_hand_computed_values() -> None:
    ref = drift.Reference.from_training(
        _training(200),
        FEATURES,
        decile_scores={"p1": [0.30, 0.20] + [0.05] * 8, "p2": [0.10, 0.10] + [None] * 8},
    )
    live = {"offers": np.zeros(11, dtype=np.int64), "score_sum": np.zeros(11)}
    live["offers"][1], live["score_sum"][1] = 4, 1.0  # four served offers, mean score 0.25
    responses = [
        {"decile": 1, "impressions": 200, "clicks": 30, "conversions": 10},
        {"decile": 2, "impressions": 100, "clicks": 5, "conversions": 20},
    ]
    out = drift.calibration(ref, live, responses)
    rows = {row["decile"]: row for row in out["by_decile"]}
    assert rows[1]["predicted"] == 0.25 and rows[1]["predicted_from"] == "served offers"
    assert rows[1]["click_through"] == 0.15 and rows[1]["conversion_rate"] == 0.05
    # No served sample in decile 2: the training holdout's mean over products, (0.2 + 0.1) / 2.
    assert rows[2]["predicted"] == 0.15 and rows[2]["predicted_from"] == "training holdout"
    assert rows[2]["click_through"] == 0.05 and rows[2]["conversion_rate"] == 0.2
    # Deciles 3..10: predicted from training, nothing observed yet.
    assert rows[3]["predicted"] == 0.05 and rows[3]["impressions"] == 0
    assert rows[3]["click_through"] is None
    # Impression-weighted mean absolute gaps.
    assert out["mean_abs_error"]["click_through"] == pytest.approx((200 * 0.10 + 100 * 0.10) / 300)
    assert out["mean_abs_error"]["conversion_rate"] == pytest.approx(
        (200 * 0.20 + 100 * 0.05) / 300
    )
    # Nothing known at all: an empty table, no error.
    empty = drift.calibration(None, None, [])
    assert empty == {
        "by_decile": [],
        "mean_abs_error": {"click_through": None, "conversion_rate": None},
    }


def test_deciles_are_assigned_as_serving_assigns_them() -> None:
    rng = np.random.default_rng(3)
    holdout = rng.beta(2, 8, 5000)
    cuts = [float(q) for q in np.quantile(holdout, 1.0 - np.arange(1, 100) / 100.0)]
    bundle = Bundle(version="v", builder=None, scorer=None, score_cuts={"p": cuts})  # type: ignore[arg-type]
    scores = rng.beta(2, 8, 2000)
    assert drift.decile_of(scores, cuts).tolist() == [bundle.decile("p", s) for s in scores]
    means = drift.decile_means(holdout, cuts)
    assert means == sorted(means, reverse=True) and len(means) == 10
    assert drift.decile_means(holdout, []) == [None] * 10
