"""The fast multi-product scorer must reproduce xgboost's and scikit-learn's own predictions."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.fast_scorer import MultiProductScorer, ScorerError
from models.linear_model import LinearModel, LinearModelError
from models.tree_flatten import ModelFormatError

N_FEATURES = 12
NAMES = [f"feat_{i}" for i in range(N_FEATURES)]
MARGIN_TOL = 2e-5  # xgboost sums leaves in float32; the scorer in float64
PROB_TOL = 1e-6
REPO = Path(__file__).resolve().parents[2]


def make_data(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Features with scattered NaNs, a whole missing group, discrete columns (values that sit
    exactly on hist cut points) and a label that depends on several of them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    X[:, :3] = np.round(X[:, :3] * 2)
    X[rng.random(n) < 0.3, 6:9] = np.nan  # e.g. an anonymous visitor's CRM block
    X[rng.random(X.shape) < 0.05] = np.nan
    z = np.nan_to_num(X[:, 0]) + np.sin(np.nan_to_num(X[:, 3]) * 2) + np.isnan(X[:, 6])
    y = (z + rng.logistic(size=n) * 0.7 > 0.8).astype(int)
    return X, y


def train(seed: int, depth: int, rounds: int, **params) -> xgb.Booster:
    X, y = make_data(seed)
    p = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": depth,
         "eta": 0.3, "nthread": 2, "seed": seed} | params  # fmt: skip
    return xgb.train(p, xgb.DMatrix(X, y, feature_names=NAMES), num_boost_round=rounds)


@pytest.fixture(scope="module")
def boosters() -> dict[str, xgb.Booster]:
    return {
        "deep": train(1, depth=6, rounds=40),
        "shallow": train(2, depth=2, rounds=30),
        "reg_logistic": train(3, depth=4, rounds=25, objective="reg:logistic"),
        "weighted": train(4, depth=5, rounds=20, scale_pos_weight=5.0, base_score=0.2),
        "one_tree": train(5, depth=3, rounds=1),
    }


@pytest.fixture(scope="module")
def linear_models() -> dict[str, tuple[LinearModel, object]]:
    X, y = make_data(7)
    pipe = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=0.5)
    ).fit(X, y)
    Xc = np.nan_to_num(X)
    plain = LogisticRegression().fit(Xc, y)
    return {
        "lr_pipeline": (LinearModel.from_sklearn(pipe), pipe),
        "lr_plain": (LinearModel.from_sklearn(plain), plain),
    }


@pytest.fixture(scope="module")
def scorer(boosters) -> MultiProductScorer:
    return MultiProductScorer.from_boosters(boosters, NAMES)


def xgb_margins(boosters, X) -> np.ndarray:
    return np.stack(
        [b.inplace_predict(X, predict_type="margin") for b in boosters.values()], axis=1
    ).astype(np.float64)


def xgb_probs(boosters, X) -> np.ndarray:
    return np.stack([b.inplace_predict(X) for b in boosters.values()], axis=1).astype(float)


def test_matches_xgboost_on_rows_and_batches(boosters, scorer):
    X, _ = make_data(99, n=400)
    assert scorer.product_ids == list(boosters)
    want_m, want_p = xgb_margins(boosters, X), xgb_probs(boosters, X)
    np.testing.assert_allclose(scorer.margins_batch(X), want_m, atol=MARGIN_TOL, rtol=0)
    np.testing.assert_allclose(scorer.score_batch(X, chunk_rows=37), want_p, atol=PROB_TOL)
    rows = np.stack([scorer.score(x) for x in X[:100]])
    np.testing.assert_allclose(rows, want_p[:100], atol=PROB_TOL, rtol=0)
    # real time and batch run the same arrays: identical, not just close
    np.testing.assert_array_equal(rows, scorer.score_batch(X[:100]))


def test_all_missing_and_infinite_values_follow_xgboost(boosters, scorer):
    X = np.array(
        [
            [np.nan] * N_FEATURES,
            [np.inf] * N_FEATURES,
            [-np.inf] * N_FEATURES,
            [1e30] + [np.nan] * (N_FEATURES - 1),
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(
        scorer.margins_batch(X), xgb_margins(boosters, X), atol=MARGIN_TOL, rtol=0
    )


def test_float64_input_is_rounded_like_xgboost(boosters, scorer):
    X, _ = make_data(5, n=200)
    X64 = X.astype(np.float64) + 1e-9  # below float32 resolution near most thresholds
    np.testing.assert_allclose(
        scorer.margins_batch(X64), xgb_margins(boosters, X64), atol=MARGIN_TOL, rtol=0
    )


def test_single_leaf_trees_give_the_base_score():
    stumps = train(11, depth=3, rounds=3, min_child_weight=1e9)  # no split possible
    assert all(d.startswith("0:leaf") for d in stumps.get_dump())
    s = MultiProductScorer.from_boosters({"cold": stumps}, NAMES)
    X, _ = make_data(12, n=20)
    np.testing.assert_allclose(s.score_batch(X)[:, 0], stumps.inplace_predict(X), atol=PROB_TOL)
    assert s.score(X[0])[0] == pytest.approx(float(stumps.inplace_predict(X[:1])[0]), abs=1e-6)


def test_linear_models_mixed_with_trees(boosters, linear_models):
    models = {
        "lr_pipeline": linear_models["lr_pipeline"][0],
        "deep": boosters["deep"],
        "lr_plain": linear_models["lr_plain"][0],
        "shallow": boosters["shallow"],
    }
    s = MultiProductScorer.from_boosters(models, NAMES)
    assert s.product_ids == list(models)
    X, _ = make_data(21, n=300)
    got = s.score_batch(X)
    pipe = linear_models["lr_pipeline"][1]
    plain = linear_models["lr_plain"][1]
    np.testing.assert_allclose(got[:, 0], pipe.predict_proba(X)[:, 1], atol=1e-6)
    np.testing.assert_allclose(got[:, 1], boosters["deep"].inplace_predict(X), atol=PROB_TOL)
    # without an imputer, missing counts as 0 (sklearn itself cannot score NaN)
    np.testing.assert_allclose(got[:, 2], plain.predict_proba(np.nan_to_num(X))[:, 1], atol=1e-6)
    np.testing.assert_allclose(got[:, 3], boosters["shallow"].inplace_predict(X), atol=PROB_TOL)
    np.testing.assert_array_equal(np.stack([s.score(x) for x in X[:50]]), got[:50])


def test_linear_only_scorer():
    lm = LinearModel(coef=np.arange(N_FEATURES) / 10, intercept=-0.5, fill=np.ones(N_FEATURES))
    s = MultiProductScorer.from_boosters({"only": lm}, NAMES)
    x = np.full(N_FEATURES, np.nan, dtype=np.float32)
    x[0] = 2.0
    want = 1 / (1 + np.exp(-(0 * 2.0 + np.arange(1, N_FEATURES).sum() / 10 - 0.5)))
    assert s.score(x)[0] == pytest.approx(want, abs=1e-12)


def _threshold_values(boosters) -> dict[int, list[float]]:
    """Split thresholds per feature, read through xgboost's own dataframe export."""
    out: dict[int, list[float]] = {}
    for b in boosters.values():
        df = b.trees_to_dataframe()
        df = df[df["Feature"] != "Leaf"]
        for name, split in zip(df["Feature"], df["Split"], strict=True):
            out.setdefault(NAMES.index(name), []).append(float(np.float32(split)))
    return out


@st.composite
def edge_vectors(draw, thresholds: dict[int, list[float]]) -> np.ndarray:
    """Each feature: NaN, a random float, or a split threshold itself / one float32 step off."""
    x = np.empty(N_FEATURES, dtype=np.float32)
    for j in range(N_FEATURES):
        kind = draw(st.sampled_from(["nan", "free", "thr", "below", "above"]))
        if kind == "nan" or (kind != "free" and j not in thresholds):
            x[j] = np.nan
        elif kind == "free":
            x[j] = draw(st.floats(-1e6, 1e6, width=32))
        else:
            t = np.float32(draw(st.sampled_from(thresholds[j])))
            step = {"thr": t, "below": np.nextafter(t, -np.inf), "above": np.nextafter(t, np.inf)}
            x[j] = step[kind]
    return x


def test_hypothesis_edge_vectors_match_xgboost(boosters, scorer):
    thresholds = _threshold_values(boosters)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(edge_vectors(thresholds), min_size=1, max_size=8))
    def check(rows):
        X = np.stack(rows)
        want = xgb_margins(boosters, X)
        np.testing.assert_allclose(scorer.margins_batch(X), want, atol=MARGIN_TOL, rtol=0)
        np.testing.assert_allclose(scorer.margins(X[0]), want[0], atol=MARGIN_TOL, rtol=0)

    check()


def test_contributions_match_xgboost_approx_contribs(boosters, scorer, linear_models):
    X, _ = make_data(31, n=5)
    for col, b in enumerate(boosters.values()):
        want = b.predict(
            xgb.DMatrix(X, feature_names=NAMES), pred_contribs=True, approx_contribs=True
        )
        got = np.stack([scorer.contributions(x)[col] for x in X])
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)
    lm = linear_models["lr_pipeline"][0]
    s = MultiProductScorer.from_boosters({"lr": lm, "deep": boosters["deep"]}, NAMES)
    c = s.contributions(X[0])
    assert c.shape == (2, N_FEATURES + 1)
    np.testing.assert_allclose(c.sum(axis=1), s.margins(X[0]), atol=1e-6)
    assert np.all(c[0, :N_FEATURES][np.isnan(X[0])] == (lm.coef * lm.fill)[np.isnan(X[0])])


def test_save_load_round_trip_needs_no_xgboost(boosters, linear_models, tmp_path):
    models = dict(boosters) | {"lr": linear_models["lr_pipeline"][0]}
    s = MultiProductScorer.from_boosters(models, NAMES)
    X, _ = make_data(41, n=50)
    again = MultiProductScorer.from_bytes(s.to_bytes())
    np.testing.assert_array_equal(again.score_batch(X), s.score_batch(X))
    assert again.product_ids == s.product_ids and again.feature_names == NAMES
    path = tmp_path / "scorer.npz"
    s.save(path)
    np.save(tmp_path / "x.npy", X[0])
    code = (
        "import sys, json, numpy as np; sys.modules['xgboost'] = None\n"
        "from models.fast_scorer import MultiProductScorer\n"
        f"s = MultiProductScorer.load({str(path)!r})\n"
        f"print(json.dumps(s.score(np.load({str(tmp_path / 'x.npy')!r})).tolist()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    np.testing.assert_array_equal(np.array(json.loads(out.stdout)), s.score(X[0]))


def test_corrupted_artifacts_are_refused(scorer, tmp_path):
    with pytest.raises(ScorerError, match="not a scorer artifact"):
        MultiProductScorer.from_bytes(b"definitely not npz")
    with pytest.raises(ScorerError, match="cannot read"):
        MultiProductScorer.load(tmp_path / "missing.npz")
    arrays = scorer._arrays()
    arrays["leaf"] = arrays["leaf"][:-1]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ScorerError, match="leaf array"):
        MultiProductScorer.from_bytes(buf.getvalue())
    del arrays["cond_0"]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ScorerError, match="missing array 'cond_0'"):
        MultiProductScorer.from_bytes(buf.getvalue())


def test_wrong_feature_vectors_are_refused(scorer):
    with pytest.raises(ScorerError, match=r"shape \(11,\), expected \(12,\)"):
        scorer.score(np.zeros(N_FEATURES - 1, dtype=np.float32))
    with pytest.raises(ScorerError, match="expected"):
        scorer.score(np.zeros((1, N_FEATURES), dtype=np.float32))
    with pytest.raises(ScorerError, match=r"expected \(n_rows, 12\)"):
        scorer.score_batch(np.zeros((3, N_FEATURES + 1)))
    with pytest.raises(ScorerError, match="not numeric"):
        scorer.score(["a"] * N_FEATURES)
    with pytest.raises(ScorerError, match="expected"):
        scorer.contributions(np.zeros(3))


def test_models_that_cannot_be_reproduced_are_refused(boosters):
    X, y = make_data(51)
    dm = xgb.DMatrix(X, y)
    with pytest.raises(ModelFormatError, match="objective 'reg:squarederror'"):
        MultiProductScorer.from_boosters(
            {"p": xgb.train({"objective": "reg:squarederror", "nthread": 2}, dm, 2)}, NAMES
        )
    gblinear = xgb.train({"booster": "gblinear", "objective": "binary:logistic"}, dm, 2)
    with pytest.raises(ModelFormatError, match="gblinear"):
        MultiProductScorer.from_boosters({"p": gblinear}, NAMES)
    multi = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "nthread": 2},
        xgb.DMatrix(X, y + (X[:, 0] > 1)),
        2,
    )
    with pytest.raises(ModelFormatError, match="objective 'multi:softprob'"):
        MultiProductScorer.from_boosters({"p": multi}, NAMES)
    with pytest.raises(ModelFormatError, match="booster has 12 features, feature_names has 11"):
        MultiProductScorer.from_boosters({"p": boosters["deep"]}, NAMES[:-1])
    renamed = [*NAMES[:-1], "other"]
    with pytest.raises(ModelFormatError, match="feature 11 is 'feat_11'"):
        MultiProductScorer.from_boosters({"p": boosters["deep"]}, renamed)
    cat_X = X[:, :2].copy()
    cat_X[:, 0] = np.abs(np.nan_to_num(cat_X[:, 0])) % 4
    frame = pd.DataFrame({"c": pd.Categorical(cat_X[:, 0].astype(int)), "v": cat_X[:, 1]})
    cat = xgb.train(
        {"objective": "binary:logistic", "max_cat_to_onehot": 1, "nthread": 2},
        xgb.DMatrix(frame, y, enable_categorical=True),
        3,
    )
    with pytest.raises(ModelFormatError, match="categorical"):
        MultiProductScorer.from_boosters({"p": cat}, ["c", "v"])


def test_bad_model_mappings_are_refused(boosters):
    with pytest.raises(ScorerError, match="no product models"):
        MultiProductScorer.from_boosters({}, NAMES)
    with pytest.raises(ScorerError, match="'p': dict is neither"):
        MultiProductScorer.from_boosters({"p": {}}, NAMES)
    with pytest.raises(ScorerError, match="linear model has 3 coefficients"):
        MultiProductScorer.from_boosters({"p": LinearModel(np.ones(3), 0.0)}, NAMES)
    with pytest.raises(ScorerError, match="duplicates"):
        MultiProductScorer.from_boosters({"p": boosters["deep"]}, [*NAMES[:-1], NAMES[0]])
    with pytest.raises(LinearModelError, match=r"coef\[1\] is not finite"):
        LinearModel(np.array([1.0, np.nan]), 0.0)
    with pytest.raises(LinearModelError, match="not a fitted LogisticRegression"):
        LinearModel.from_sklearn(StandardScaler())


def test_verification_catches_a_model_it_does_not_reproduce(boosters):
    s = MultiProductScorer.from_boosters({"deep": boosters["deep"]}, NAMES, verify=False)
    s._forest.leaf[:] += np.float32(0.01)  # what a misread leaf layout would do
    with pytest.raises(ModelFormatError, match="disagree with xgboost"):
        s._verify_against([boosters["deep"]])


def test_blends_of_trees_and_linear_models_score_alike_in_real_time_and_batch(
    boosters, linear_models, tmp_path
):
    """A blended product (models/blend.py) is one column fed by several parts: it scores the
    blend's own margin, identically per row and in batch, after a save/load, and its
    contributions add up to its margin."""
    from models.blend import Blend, blend_of
    from models.training.artifacts import _read_model, _write_model

    lr = linear_models["lr_pipeline"][0]
    tree_lr = blend_of([boosters["shallow"], lr], ["xgboost", "logistic"], [0.6, 0.4], offset=-1.2)
    two_trees = blend_of([boosters["deep"], boosters["one_tree"]], ["a", "b"], [0.5, 0.5])
    two_linear = blend_of([lr, linear_models["lr_plain"][0]], ["a", "b"], [0.3, 0.7])
    models = {
        "deep": boosters["deep"],
        "tree_lr": tree_lr,
        "lr_plain": linear_models["lr_plain"][0],
        "two_trees": two_trees,
        "two_linear": two_linear,
    }
    s = MultiProductScorer.from_boosters(models, NAMES)
    X, _ = make_data(33, n=300)
    want_tree_lr = (
        0.6 * boosters["shallow"].inplace_predict(X, predict_type="margin")
        + 0.4 * (lr.margin(X))
        - 1.2
    )
    batch = s.margins_batch(X)
    np.testing.assert_allclose(batch[:, 1], want_tree_lr, atol=MARGIN_TOL)
    for k, name in ((1, "tree_lr"), (3, "two_trees"), (4, "two_linear")):
        np.testing.assert_allclose(batch[:, k], models[name].margin(X), atol=MARGIN_TOL)
    np.testing.assert_allclose(
        batch[:, 0], boosters["deep"].inplace_predict(X, predict_type="margin"), atol=MARGIN_TOL
    )
    # real time == batch, bit for bit, also after a round trip through the artifact
    np.testing.assert_array_equal(np.stack([s.margins(x) for x in X[:60]]), batch[:60])
    s.save(tmp_path / "scorer.npz")
    loaded = MultiProductScorer.load(tmp_path / "scorer.npz")
    np.testing.assert_array_equal(loaded.score_batch(X), s.score_batch(X))
    np.testing.assert_array_equal(loaded.score(X[5]), s.score_batch(X[5:6])[0])
    contrib = s.contributions(X[7])
    np.testing.assert_allclose(contrib.sum(axis=1), s.margins(X[7]), atol=1e-5)
    # the training artifact keeps a blend's parts
    _write_model(tmp_path / "blend.json", tree_lr)
    again = _read_model(tmp_path / "blend.json")
    assert isinstance(again, Blend) and again.names == ["xgboost", "logistic"]
    np.testing.assert_allclose(again.margin(X), tree_lr.margin(X), atol=1e-6)


def test_contributions_of_a_few_products_are_those_rows_of_all(boosters, linear_models):
    """Serving explains only the products it offers: the rows asked for, in the order asked,
    equal those rows of every product's contributions, for trees, linear models and blends
    (several parts feeding one row), on rows with missing values too; and reading the paths
    of the walk that scored the row (as serving does) gives the same rows as walking again."""
    from models.blend import blend_of

    lr = linear_models["lr_pipeline"][0]
    models = {
        "deep": boosters["deep"],
        "tree_lr": blend_of([boosters["shallow"], lr], ["x", "l"], [0.6, 0.4], offset=-1.2),
        "lr_plain": linear_models["lr_plain"][0],
        "one_tree": boosters["one_tree"],
        "two_trees": blend_of([boosters["deep"], boosters["one_tree"]], ["a", "b"], [0.5, 0.5]),
    }
    s = MultiProductScorer.from_boosters(models, NAMES)
    X, _ = make_data(5, n=40)
    X[::3, 1] = np.nan
    for x in X:
        every = s.contributions(x)
        walk = s.walk(x)
        np.testing.assert_array_equal(walk.margins, s.margins(x))
        np.testing.assert_allclose(every.sum(axis=1), walk.margins, atol=1e-9)
        for rows in ([4, 0], [1], [2, 3, 1], [], list(range(5))):
            np.testing.assert_array_equal(s.contributions(x, rows), every[rows])
            np.testing.assert_array_equal(s.contributions(x, rows, walk), every[rows])
    with pytest.raises(ScorerError, match="positions"):
        s.contributions(X[0], [5])
