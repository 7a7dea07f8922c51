"""Training proper: every product's candidates on the same split (XGBoost and the baselines),
Platt calibration on validation, the choice by validation AUC, holdout figures, and the one
real-time scorer of the served models (``train_tenant``)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence

import numpy as np
import redis

from models import labels as label_rules
from models.baselines import fit_logistic, fit_popularity, fit_tree
from models.calibration import Platt, fit_platt
from models.evaluation import auc, evaluate_scores, log_loss
from models.fast_scorer import MultiProductScorer
from models.training import selection
from models.training.dataset import Dataset, prepare
from models.training.params import (
    ProgressFn,
    TrainingEngine,
    TrainingError,
    TrainParams,
    _progress,
)
from models.training.results import Candidate, ProductResult, TrainingResult, headline
from store.config import Settings


def _xgb_params(params: TrainParams, pos: int, neg: int) -> dict:
    return {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": params.max_depth,
        "eta": params.learning_rate,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 1.0,
        "lambda": 1.0,
        "max_bin": params.max_bin,
        "scale_pos_weight": float(min(max(neg / max(pos, 1), 1.0), params.max_pos_weight)),
        # Early stopping watches the validation log loss with the training weights: the
        # quantity the booster minimizes, smoother than AUC on a few hundred positives.
        "eval_metric": "logloss",
        "nthread": params.nthread or os.cpu_count() or 1,
        "seed": params.seed,
    }


def fit_xgboost(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    feature_names: Sequence[str] | None,
    params: TrainParams,
    *,
    overrides: dict | None = None,
    rounds: int | None = None,
):
    """The early-stopped booster (sliced to its best iteration) and its info.

    ``overrides`` replace booster parameters (the small-data settings of selection.py);
    without a validation set (``X_val`` None) exactly ``rounds`` trees are grown.
    ``feature_names`` None: an unnamed booster, for margins that are never served (CV folds):
    XGBoost checks the names of every matrix at every round, a quarter of a small fit's time.
    """
    import xgboost as xgb

    pos = int(y_train.sum())
    p = {**_xgb_params(params, pos, int(y_train.size - pos)), **(overrides or {})}
    stopping = int(p.pop("early_stopping", params.early_stopping))
    names = list(feature_names) if feature_names is not None else None
    dtrain = xgb.QuantileDMatrix(X_train, label=y_train, feature_names=names,
                                 max_bin=p["max_bin"], nthread=p["nthread"])  # fmt: skip
    if X_val is None or y_val is None:
        n = int(rounds or params.max_rounds)
        booster = xgb.train(p, dtrain, num_boost_round=n, verbose_eval=False)
        booster.feature_names = names
        return booster, {"trees": n, "scale_pos_weight": round(p["scale_pos_weight"], 3)}
    weight = np.where(np.asarray(y_val, dtype=bool), p["scale_pos_weight"], 1.0)
    dval = xgb.QuantileDMatrix(
        X_val,
        label=y_val,
        weight=weight,
        ref=dtrain,
        feature_names=names,
        max_bin=p["max_bin"],
        nthread=p["nthread"],
    )
    max_rounds = int(rounds or params.max_rounds)
    booster = xgb.train(
        p,
        dtrain,
        num_boost_round=max_rounds,
        evals=[(dval, "validation")],
        early_stopping_rounds=stopping,
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", max_rounds - 1))
    booster = booster[: best + 1]
    booster.feature_names = names
    return booster, {"trees": best + 1, "scale_pos_weight": round(p["scale_pos_weight"], 3)}


def _train_rows(y: np.ndarray, rows: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """All training rows, or (above ``cap``) a sample of ``cap`` rows that keeps every positive
    while they are under half of it (rare products lose no buyer; common ones stay balanced)."""
    if rows.size <= cap:
        return rows
    pos = rows[y[rows]]
    neg = rows[~y[rows]]
    n_pos = min(pos.size, max(cap // 2, cap - neg.size))
    n_neg = min(neg.size, cap - n_pos)
    keep = [
        pos if n_pos == pos.size else rng.choice(pos, size=n_pos, replace=False),
        neg if n_neg == neg.size else rng.choice(neg, size=n_neg, replace=False),
    ]
    return np.sort(np.concatenate(keep))


def _note(chosen: str, val_auc: dict[str, float | None]) -> str:
    xgb_auc, lr_auc = val_auc.get("xgboost"), val_auc.get("logistic")
    if chosen == "xgboost":
        text = f"XGBoost served (validation AUC {xgb_auc:.3f}"
        return text + (f" vs logistic regression {lr_auc:.3f})" if lr_auc is not None else ")")
    names = {"logistic": "logistic regression", "tree": "decision tree", "popularity": "popularity"}
    text = f"XGBoost lost on validation AUC ({xgb_auc:.3f} vs {names[chosen]} {val_auc[chosen]:.3f}); {names[chosen]} is served"
    if chosen == "popularity":
        text += " (no model beat segment popularity: little signal for this product)"
    return text


def _train_product(
    data: Dataset,
    j: int,
    params: TrainParams,
    rng: np.random.Generator,
    fit_booster=fit_xgboost,
) -> tuple[ProductResult, dict[str, Candidate], dict]:
    product = data.products[j]
    started = time.perf_counter()
    y = data.Y[:, j]
    res = ProductResult(product, "error")
    rows = {
        s: np.flatnonzero(data.split == k) for k, s in enumerate(("train", "validation", "holdout"))
    }
    res.positives = {s: int(y[r].sum()) for s, r in rows.items()}
    res.rows = {s: int(r.size) for s, r in rows.items()}
    what = {"holdings": "holds", "purchases": "bought", "both": "holds or bought"}[
        data.snapshot["label_source"]
    ]
    if product not in data.known_products and y.sum() == 0:
        res.error = f"unknown product {product!r}: not in the catalog, the holdings or the events"
        return res, {}, {}
    if res.positives["train"] < params.min_positives:
        n = res.positives["train"]
        res.error = (
            f"no customer {what} {product!r}: nothing to learn from" if y.sum() == 0 else
            f"only {n} customers in the training split {what} {product!r} (at least "
            f"{params.min_positives} needed)"
        )  # fmt: skip
        return res, {}, {}
    if res.positives["train"] == res.rows["train"]:
        res.error = f"every training customer {what} {product!r}: nothing to tell apart"
        return res, {}, {}
    cv = selection.use_cv(params, res.positives["train"] + res.positives["validation"])
    if not cv and res.positives["validation"] < params.min_validation_positives:
        res.error = (
            f"only {res.positives['validation']} customers in the validation split {what} "
            f"{product!r} (at least {params.min_validation_positives} needed to choose and "
            "calibrate a model)"
        )
        return res, {}, {}

    names = data.schema.feature_names
    masked = [k for k, nm in enumerate(names) if nm == f"holds_{product}"]
    if cv:
        cands = _select_by_cv(data, y, rows, masked, params, rng, res)
    else:
        cands = _select_on_validation(data, y, rows, masked, params, rng, res, fit_booster)
    return _finish(data, y, rows, cands, res, started)


def _select_on_validation(
    data: Dataset,
    y: np.ndarray,
    rows: dict[str, np.ndarray],
    masked: list[int],
    params: TrainParams,
    rng: np.random.Generator,
    res: ProductResult,
    fit_booster=fit_xgboost,
) -> dict[str, Candidate]:
    """Large data: every candidate learns from the training split, is calibrated and
    compared on the validation split (thousands of positives: differences are real).
    ``fit_booster``: XGBoost here, or on a Dask cluster (``distributed.DaskEngine``)."""
    names = data.schema.feature_names
    tr = _train_rows(y, rows["train"], params.max_train_rows, rng)
    res.rows["train"] = int(tr.size)
    X_tr = data.X[tr]
    X_va = data.X[rows["validation"]]
    if masked:  # the label itself must not be a feature
        X_tr[:, masked] = np.nan
        X_va[:, masked] = np.nan
    y_tr, y_va = y[tr], y[rows["validation"]]
    cands: dict[str, Candidate] = {}
    booster, info = fit_booster(X_tr, y_tr, X_va, y_va, names, params)
    cands["xgboost"] = Candidate("xgboost", booster, Platt(), info)
    base = _train_rows(y_tr, np.arange(y_tr.size), params.max_baseline_rows, rng)
    X_b, y_b = (X_tr, y_tr) if base.size == y_tr.size else (X_tr[base], y_tr[base])
    if "logistic" in params.baselines:
        model, info = fit_logistic(X_b, y_b, X_va, y_va, masked=masked, seed=params.seed)
        cands["logistic"] = Candidate("logistic", model, Platt(), {**info, "rows": int(y_b.size)})
    if "tree" in params.baselines:
        tree = fit_tree(X_b, y_b, names, seed=params.seed, nthread=params.nthread)
        cands["tree"] = Candidate("tree", tree, Platt(), {"rows": int(y_b.size)})
    if "popularity" in params.baselines:
        seg_cols = [k for k, nm in enumerate(names) if nm.startswith("segment=")]
        cands["popularity"] = Candidate("popularity", fit_popularity(X_tr, y_tr, seg_cols), Platt())
    del X_tr, X_b

    val_auc: dict[str, float | None] = {}
    for name, cand in cands.items():
        margin = cand.raw_margin(X_va)
        cand.platt = fit_platt(margin, y_va)
        val_auc[name] = auc(y_va, margin)
        res.candidates[name] = {
            "validation": {"auc": _r(val_auc[name]), "log_loss": _r(log_loss(y_va, cand.platt.prob(margin)))},
            "calibration": cand.platt.to_dict(),
            "info": cand.info,
        }  # fmt: skip
    chosen = max(cands, key=lambda nm: -1.0 if (a := val_auc[nm]) is None else a)  # first wins ties
    res.chosen = chosen
    res.note = _note(chosen, val_auc)
    res.selection = {"method": "validation", "positives": res.positives["validation"]}
    return cands


def _select_by_cv(
    data: Dataset,
    y: np.ndarray,
    rows: dict[str, np.ndarray],
    masked: list[int],
    params: TrainParams,
    rng: np.random.Generator,
    res: ProductResult,
) -> dict[str, Candidate]:
    """Few positives: the train and validation splits together are the training part,
    candidates are compared by repeated stratified k-fold CV on it (selection.py)."""
    part = np.sort(np.concatenate([rows["train"], rows["validation"]]))
    tr = _train_rows(y, part, params.max_train_rows, rng)
    X_tr = data.X[tr]
    if masked:  # the label itself must not be a feature
        X_tr[:, masked] = np.nan
    y_tr = y[tr]
    cv_rows = _train_rows(y_tr, np.arange(y_tr.size), params.cv_max_rows, rng)
    cands, report, chosen, note = selection.select(
        X_tr, y_tr, list(data.schema.feature_names), masked, params, rng, cv_rows=cv_rows
    )
    res.rows["train"] = int(tr.size)
    res.rows["validation"] = 0  # part of the training part: no slice is set apart
    res.candidates = report
    res.chosen = chosen
    res.note = note
    res.selection = {
        "method": "cross-validation",
        "folds": params.cv_folds,
        "repeats": params.cv_repeats,
        "rows": int(cv_rows.size),
        "positives": int(y_tr[cv_rows].sum()),
        "why": f"{int(y_tr.sum())} positives in the training part, under "
        f"{params.cv_max_positives}: one validation slice would choose by noise",
    }
    return cands


def _finish(
    data: Dataset,
    y: np.ndarray,
    rows: dict[str, np.ndarray],
    cands: dict[str, Candidate],
    res: ProductResult,
    started: float,
) -> tuple[ProductResult, dict[str, Candidate], dict]:
    X_ho = data.X[rows["holdout"]]
    y_ho = y[rows["holdout"]]
    evaluation = {name: evaluate_scores(y_ho, cand.prob(X_ho)) for name, cand in cands.items()}
    for name, ev in evaluation.items():
        res.candidates[name]["holdout"] = headline(ev)
    if res.positives["holdout"] == 0:
        res.note = (
            res.note or ""
        ) + "; the holdout has no positives, so holdout figures are missing"
    res.status = "ok"
    res.seconds = round(time.perf_counter() - started, 3)
    return res, cands, evaluation


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def new_version_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def train_tenant(
    r: redis.Redis,
    settings: Settings,
    tenant: str,
    products: Sequence[str] | None = None,
    label_source: str = "holdings",
    *,
    params: TrainParams | None = None,
    progress: ProgressFn | None = None,
    engine: TrainingEngine | None = None,
) -> TrainingResult:
    """Train, choose, calibrate and evaluate every product's model; see the module docstring.

    ``progress(stage, done, total)`` is called as work advances (for a progress bar).
    ``engine`` (a Dask cluster: ``models.training.distributed``) reads the archive and fits
    XGBoost instead of this process; everything else is the same.
    Raises ``TrainingError`` for an unknown tenant, no CRM data, or when no product could be
    trained (``err.result`` then holds each product's reason).
    """
    params = params or TrainParams()
    params.label_source = label_source
    try:
        label_rules.check_source(label_source)
    except label_rules.LabelError as err:
        raise TrainingError(str(err)) from None
    started = time.perf_counter()
    data = prepare(
        r, settings, tenant, products=products, params=params, progress=progress, engine=engine
    )
    prepared = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    results: dict[str, ProductResult] = {}
    candidates: dict[str, dict[str, Candidate]] = {}
    evaluation: dict[str, dict] = {}
    P = len(data.products)
    for j, product in enumerate(data.products):
        _progress(progress, f"training {product}", j, P)
        res, cands, ev = _train_product(
            data, j, params, rng, engine.fit_xgboost if engine else fit_xgboost
        )
        results[product] = res
        if cands:
            candidates[product] = cands
            evaluation[product] = ev
    _progress(progress, "training", P, P)
    result = TrainingResult(
        tenant=tenant,
        version=new_version_id(),
        created_at=time.time(),
        params=params.to_dict(),
        schema=data.schema,
        products=results,
        candidates=candidates,
        snapshot=data.snapshot,
        timings={},
        evaluation=evaluation,
    )
    if not candidates:
        reasons = "; ".join(f"{p}: {res.error}" for p, res in results.items())
        raise TrainingError(f"no product of tenant {tenant!r} could be trained ({reasons})", result)
    served = result.served
    result.scorer = MultiProductScorer.from_boosters(served, data.schema.feature_names)
    _check_scorer(result, data)
    result.timings = {
        "prepare_seconds": round(prepared - started, 3),
        "train_seconds": round(time.perf_counter() - prepared, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "customers": int(data.X.shape[0]),
        "features": int(data.X.shape[1]),
        "products": P,
        **(engine.describe() if engine else {"engine": "local"}),
    }
    return result


def _check_scorer(result: TrainingResult, data: Dataset) -> None:
    """The real-time scorer must give the served candidates' calibrated probabilities."""
    assert result.scorer is not None
    sample = np.flatnonzero(data.split == 2)[:256]
    if sample.size == 0:
        return
    X = data.X[sample]
    got = result.scorer.score_batch(X)
    for k, p in enumerate(result.scorer.product_ids):
        res = result.products[p]
        assert res.chosen is not None  # the scorer serves only products with a chosen candidate
        want = result.candidates[p][res.chosen].prob(X)
        if not np.allclose(got[:, k], want, atol=1e-4, rtol=1e-3):
            raise TrainingError(
                f"product {p!r}: the real-time scorer disagrees with the trained "
                f"{res.chosen} model (max difference {np.abs(got[:, k] - want).max():.3g})"
            )
