"""The baselines every XGBoost model is compared with, each in a form the fast scorer serves.

- **popularity**: the product's rate among training customers, per ZIP segment where the
  segment has enough customers (smoothed towards the overall rate). It is a ``LinearModel``
  over the segment one-hot features, so it scores like any other product model.
- **logistic**: median imputation, standardization, L2-regularized logistic regression, the
  strength chosen on the validation split; folded into a ``LinearModel``.
- **tree**: one CART decision tree (balanced class weights, depth 6, missing values handled),
  stored as a single-tree XGBoost booster so that it too can be served and explained.

Whichever candidate (XGBoost included) wins on validation AUC is served; see models/training/.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from models.evaluation import auc
from models.linear_model import LinearModel

POPULARITY_SMOOTHING = 20.0  # pseudo-customers at the overall rate added to each segment
LOGISTIC_C = (0.01, 0.1, 1.0)
LOGISTIC_GRID_MAX_ROWS = 50_000  # above this, C = 1.0 only (regularization matters less)
TREE_MAX_DEPTH = 6


def _logit(p: np.ndarray | float) -> np.ndarray | float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_popularity(X: np.ndarray, y: np.ndarray, segment_cols: Sequence[int]) -> LinearModel:
    """Segment-level popularity as a linear model (overall rate where no segment is known)."""
    F = X.shape[1]
    y = np.asarray(y, dtype=np.float64)
    prior = (y.sum() + 1.0) / (y.size + 2.0)
    coef = np.zeros(F)
    for j in segment_cols:
        member = X[:, j] == 1.0
        n_s = float(member.sum())
        rate = (float(y[member].sum()) + POPULARITY_SMOOTHING * prior) / (
            n_s + POPULARITY_SMOOTHING
        )
        coef[j] = float(_logit(rate) - _logit(prior))
    # A row belongs to at most one segment column, and NaN (no ZIP) fills as 0: prior.
    return LinearModel(coef=coef, intercept=float(_logit(prior)), fill=np.zeros(F))


def fit_logistic(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    masked: Sequence[int] = (),
    seed: int = 0,
    grid: Sequence[float] | None = None,
) -> tuple[LinearModel, dict]:
    """Regularized logistic regression; ``masked`` features get a zero weight (no leakage).

    The strength C is chosen on the validation rows among ``grid`` (default LOGISTIC_C, or
    C = 1 alone above LOGISTIC_GRID_MAX_ROWS rows); a one-value grid skips the scoring."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if grid is None:
        grid = LOGISTIC_C if X_train.shape[0] <= LOGISTIC_GRID_MAX_ROWS else (1.0,)
    best: tuple[float, float, LinearModel] | None = None
    for C in grid:
        pipe = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("lr", LogisticRegression(C=C, max_iter=300, random_state=seed)),
            ]
        )
        pipe.fit(X_train, y_train)
        model = LinearModel.from_sklearn(pipe)
        if len(masked):
            model.coef[list(masked)] = 0.0
        score = auc(y_val, model.margin(X_val)) if len(grid) > 1 else 0.0
        score = -1.0 if score is None else score
        if best is None or score > best[0]:
            best = (score, C, model)
    assert best is not None
    return best[2], {"C": best[1]}


def fit_tree(
    X_train: np.ndarray,
    y_train: np.ndarray,
    feature_names: Sequence[str],
    *,
    max_depth: int = TREE_MAX_DEPTH,
    seed: int = 0,
    nthread: int = 0,
):
    """One CART tree (class-balanced Gini splits) as a one-tree XGBoost booster.

    Grown by XGBoost's histogram algorithm, which is ~30x faster than scikit-learn's exact
    splitter on millions of rows with missing values: with base score 0.5, one round at
    learning rate 1 and no regularization, every row's hessian is the constant 0.25 (times
    its class weight), so the second-order split gain on log loss *is* the weighted variance
    (Gini) reduction CART maximizes. Missing values get a learned default branch. The leaf
    values are then rewritten as the log-odds of each leaf's weighted positive rate.
    """
    import xgboost as xgb

    y = np.asarray(y_train, dtype=bool)
    n, pos = y.size, int(y.sum())
    weight = np.where(y, n / (2.0 * max(pos, 1)), n / (2.0 * max(n - pos, 1)))  # "balanced"
    min_leaf = max(20, n // 500)
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": max_depth,
        "eta": 1.0,
        "lambda": 0.0,
        "alpha": 0.0,
        "gamma": 0.0,
        "base_score": 0.5,
        # Hessian of a row is 0.25 x its weight: a leaf needs min_leaf class-balanced rows.
        "min_child_weight": 0.25 * min_leaf,
        "nthread": nthread or os.cpu_count() or 1,
        "seed": seed,
    }
    d = xgb.DMatrix(X_train, label=y, weight=weight, feature_names=list(feature_names),
                    nthread=params["nthread"])  # fmt: skip
    booster = xgb.train(params, d, num_boost_round=1)
    # Leaf value = -G/H = 4 * (weighted rate - 0.5): rewrite as the log-odds of that rate.
    model = json.loads(bytes(booster.save_raw("json")))
    tree = model["learner"]["gradient_booster"]["model"]["trees"][0]
    leaf = np.asarray(tree["left_children"]) < 0
    for key in ("split_conditions", "base_weights"):
        values = np.asarray(tree[key], dtype=np.float64)
        rate = np.clip(
            0.5 + np.asarray(tree["base_weights"], dtype=np.float64) / 4.0, 1e-6, 1 - 1e-6
        )
        logit = np.log(rate / (1 - rate))
        if key == "split_conditions":
            values[leaf] = logit[leaf]
        else:
            values = logit
        tree[key] = values.tolist()
    out = xgb.Booster(model_file=bytearray(json.dumps(model).encode()))
    out.feature_names = list(feature_names)
    return out
