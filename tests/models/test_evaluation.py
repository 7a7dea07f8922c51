"""Holdout metrics checked against independent computations (scikit-learn, brute force)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from models.evaluation import (
    auc,
    capture_at,
    evaluate_scores,
    gains_chart,
    gains_curve,
    lift_by_decile,
    log_loss,
    reliability,
)

labels_and_scores = st.integers(min_value=2, max_value=300).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        # few distinct values: many ties
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(labels_and_scores)
def test_auc_matches_scikit_learn_with_ties(data: tuple[list[bool], list[float]]) -> None:
    y, p = np.array(data[0]), np.array(data[1])
    if y.all() or not y.any():
        assert auc(y, p) is None
    else:
        assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def _brute_gains(y: np.ndarray, p: np.ndarray, share: float, shuffles: int = 4000) -> float:
    """Expected share of positives in the top ``share`` under random order within ties."""
    rng = np.random.default_rng(0)
    k = share * y.size
    found = 0.0
    for _ in range(shuffles):
        order = np.lexsort((rng.random(y.size), -p))
        ys = y[order].astype(float)
        whole = int(np.floor(k))
        part = k - whole
        found += ys[:whole].sum() + (part * ys[whole] if whole < y.size else 0.0)
    return found / shuffles / y.sum()


@settings(max_examples=25, deadline=None)
@given(labels_and_scores, st.sampled_from([0.1, 0.2, 0.5]))
def test_capture_spreads_ties_evenly(data: tuple[list[bool], list[float]], share: float) -> None:
    y, p = np.array(data[0]), np.array(data[1])
    if not y.any():
        return
    curve = gains_curve(y, p)
    assert capture_at(curve, share) == pytest.approx(_brute_gains(y, p, share), abs=0.03)


def test_gains_of_perfect_constant_and_reversed_scores() -> None:
    y = np.zeros(1000, dtype=bool)
    y[:50] = True
    perfect = np.where(y, 1.0, 0.0)
    assert capture_at(gains_curve(y, perfect), 0.05) == pytest.approx(1.0)
    assert capture_at(gains_curve(y, perfect), 0.10) == pytest.approx(1.0)
    constant = np.full(1000, 0.3)
    assert capture_at(gains_curve(y, constant), 0.2) == pytest.approx(0.2)
    assert gains_curve(y, constant)[50] == pytest.approx(0.5)
    reversed_ = 1.0 - perfect
    assert capture_at(gains_curve(y, reversed_), 0.2) == pytest.approx(0.0)
    deciles = lift_by_decile(y, perfect)
    assert deciles[0]["lift"] == pytest.approx(10.0) and deciles[0]["rate"] == pytest.approx(0.5)
    assert sum(d["share_of_positives"] for d in deciles) == pytest.approx(1.0)
    assert [d["lift"] for d in lift_by_decile(y, constant)] == pytest.approx([1.0] * 10)


def test_log_loss_and_calibration_bins() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.6, 50_000)
    y = rng.random(p.size) < p  # calibrated by construction
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    rel = reliability(y, p)
    assert sum(b["count"] for b in rel["bins"]) == p.size
    assert rel["ece"] < 0.01
    for b in rel["bins"]:
        assert b["observed_rate"] == pytest.approx(b["mean_predicted"], abs=0.02)
    # Scores 60% too high are badly calibrated though they rank the same.
    assert reliability(y, 1.6 * p)["ece"] > 0.1
    assert auc(y, 1.6 * p) == pytest.approx(auc(y, p), abs=1e-3)


def test_evaluate_scores_summary_and_empty_cases() -> None:
    y = np.array([True, False, False, True, False])
    p = np.array([0.9, 0.1, 0.4, 0.7, 0.2])
    ev = evaluate_scores(y, p)
    assert ev["auc"] == 1.0 and ev["positives"] == 2 and ev["rows"] == 5
    assert len(ev["gains"]) == 101 and ev["gains"][0] == 0 and ev["gains"][-1] == 1
    none = evaluate_scores(np.zeros(4, dtype=bool), np.ones(4) / 2)
    assert none["auc"] is None and none["capture_at_20"] is None and none["gains"] == []


def test_gains_chart_is_a_png(tmp_path) -> None:
    rng = np.random.default_rng(2)
    y = rng.random(500) < 0.2
    curves = {
        f"p{k}": {
            "xgboost": gains_curve(y, rng.random(500) + y),
            "popularity": gains_curve(y, np.ones(500)),
        }
        for k in range(5)
    }
    path = gains_chart(curves, tmp_path / "sub" / "gains.png", served={"p0": "xgboost"})
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
