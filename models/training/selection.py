"""Choosing a product's model when positives are few: repeated stratified k-fold
cross-validation on the training part, not one small validation slice.

Why: with a few thousand customers and a product held by a few percent, a 15% validation
slice holds a few dozen positives, and the AUC difference between candidates on it is noise
(one real extract: 27 positives, XGBoost picked after 5 trees, served AUC 0.73 where logistic
regression reached 0.75 on the holdout). Here every candidate is scored on every fold of
``cv_repeats`` x ``cv_folds`` stratified folds of the *training part* (the train and
validation splits together: no slice is set apart for choosing), and the report gives each
candidate's mean and standard deviation over the folds. The holdout split is not touched: it
stays for the report and for the champion comparison.

Per fold, each candidate learns from the other folds. XGBoost uses small-data settings
(depth 3, learning rate 0.05, L2 5, row and column subsampling 0.8, up to 600 rounds) and
stops early on an inner 20% of the fold's training rows, never on the fold it is scored on;
logistic regression chooses its strength on the same inner rows and is refitted on all of the
fold's training rows.

Then:
- each candidate's Platt calibration is fitted on its out-of-fold margins, pooled over the
  repeats (as scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does);
- the **blend** of the two best candidates (mean of their calibrated log-odds, models/blend.py)
  is scored on the same folds and competes like any other candidate;
- the candidate with the best mean fold AUC is served, after a refit on the whole training
  part: XGBoost with the mean best iteration of the folds, logistic regression with the
  strength the folds chose most often.

The calibrations are fitted on out-of-fold margins that include each fold's own rows: two
parameters per candidate on thousands of rows, which moves a blend's fold AUC by far less
than the spread between folds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from models.baselines import fit_logistic, fit_popularity, fit_tree
from models.blend import blend_of
from models.calibration import fit_platt
from models.evaluation import auc
from models.training.params import TrainParams
from models.training.results import Candidate

INNER_STOP_SHARE = 0.2  # of a fold's training rows, for XGBoost's early stopping and LR's C
NAMES = {
    "xgboost": "XGBoost",
    "logistic": "logistic regression",
    "tree": "decision tree",
    "popularity": "popularity",
    "blend": "blend",
}


def small_xgb(params: TrainParams) -> dict:
    """XGBoost settings for small data: shallow, slow, regularised, subsampled, unweighted.

    Unweighted: with a few hundred positives, weighting them x30 makes each one's noise
    count x30 too; AUC does not need balanced classes and calibration comes after."""
    return {
        "max_depth": params.cv_max_depth,
        "eta": params.cv_learning_rate,
        "min_child_weight": params.cv_min_child_weight,
        "lambda": params.cv_lambda,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "scale_pos_weight": 1.0,
        "early_stopping": params.cv_early_stopping,
        # A few thousand rows: 64 bins lose nothing, and one thread beats two that wait on
        # each other (measured: 2 threads 3.6x slower on a shared 2-core machine).
        "max_bin": 64,
        "nthread": 1,
    }


def use_cv(params: TrainParams, train_positives: int) -> bool:
    return 0 < train_positives < params.cv_max_positives and params.cv_folds >= 2


def folds(
    y: np.ndarray, n_folds: int, repeats: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` x ``n_folds`` stratified (train, test) index pairs over ``y``'s rows."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    n_folds = max(2, min(n_folds, int(y.sum()), int(y.size - y.sum())))
    splitter = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=repeats, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros((y.size, 1)), y)]


def _inner(
    y: np.ndarray, rows: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (fit, stop) stratified by ``y`` (stop: INNER_STOP_SHARE of each class)."""
    fit, stop = [], []
    for cls in (False, True):
        r = rows[y[rows] == cls]
        r = rng.permutation(r)
        k = max(1, round(r.size * INNER_STOP_SHARE))
        stop.append(r[:k])
        fit.append(r[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(stop))


@dataclass
class CvRecord:
    """Out-of-fold margins and fold AUCs of one candidate."""

    fold_auc: list[float | None] = field(default_factory=list)
    oof: list[np.ndarray] = field(default_factory=list)  # per repeat, margin of every row
    info: list[dict] = field(default_factory=list)

    def stats(self) -> dict:
        vals = np.array([a for a in self.fold_auc if a is not None], dtype=np.float64)
        if vals.size == 0:
            return {"auc_mean": None, "auc_sd": None, "folds": 0}
        return {
            "auc_mean": round(float(vals.mean()), 6),
            "auc_sd": round(float(vals.std(ddof=1)) if vals.size > 1 else 0.0, 6),
            "folds": int(vals.size),
        }

    @property
    def mean(self) -> float:
        s = self.stats()["auc_mean"]
        return -1.0 if s is None else float(s)


def select(
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    masked: list[int],
    params: TrainParams,
    rng: np.random.Generator,
    *,
    cv_rows: np.ndarray | None = None,
) -> tuple[dict[str, Candidate], dict[str, dict], str, str]:
    """Cross-validate the candidates on ``X, y`` (the training part, own holding masked),
    refit every candidate on all of it, and choose.

    ``cv_rows``: the rows the folds use (a sample for large parts; default all).
    Returns (candidates refitted and calibrated, report per candidate, chosen, note).
    """
    started = time.perf_counter()
    cv_rows = np.arange(y.size) if cv_rows is None else cv_rows
    Xc, yc = X[cv_rows], y[cv_rows]
    splits = folds(yc, params.cv_folds, params.cv_repeats, params.seed)
    n_folds = len(splits) // max(params.cv_repeats, 1)
    seg_cols = [k for k, nm in enumerate(names) if nm.startswith("segment=")]
    xgb_over = small_xgb(params)
    wanted = ["xgboost", *[b for b in ("logistic", "tree", "popularity") if b in params.baselines]]
    recs = {name: CvRecord() for name in wanted}
    for name in wanted:
        recs[name].oof = [np.full(yc.size, np.nan) for _ in range(params.cv_repeats)]

    for k, (tr, te) in enumerate(splits):
        repeat = k // n_folds
        fit_rows, stop_rows = _inner(yc, tr, rng)
        margins: dict[str, np.ndarray] = {}
        booster, info = _fit_xgb(Xc, yc, fit_rows, stop_rows, names, params, xgb_over)
        margins["xgboost"] = _margin(booster, Xc[te])
        recs["xgboost"].info.append(info)
        if "logistic" in recs:
            # The strength is chosen in the first repeat's folds; later repeats reuse the one
            # chosen most (the grid search was ~60% of the folds' time, measured).
            if repeat == 0:
                _, info = fit_logistic(Xc[fit_rows], yc[fit_rows], Xc[stop_rows], yc[stop_rows],
                                       masked=masked, seed=params.seed)  # fmt: skip
            else:
                info = {"C": _most_chosen(recs["logistic"].info[:n_folds])}
            model, _ = fit_logistic(Xc[tr], yc[tr], Xc[tr], yc[tr], masked=masked,
                                    seed=params.seed, grid=(info["C"],))  # fmt: skip
            margins["logistic"] = model.margin(Xc[te])
            recs["logistic"].info.append(info)
        if "tree" in recs:
            tree = fit_tree(Xc[tr], yc[tr], names, seed=params.seed, nthread=1)
            margins["tree"] = _margin(tree, Xc[te])
        if "popularity" in recs:
            margins["popularity"] = fit_popularity(Xc[tr], yc[tr], seg_cols).margin(Xc[te])
        for name, m in margins.items():
            recs[name].fold_auc.append(auc(yc[te], m))
            recs[name].oof[repeat][te] = m

    # Calibration of each candidate on its pooled out-of-fold margins.
    y_oof = np.tile(yc, params.cv_repeats)
    platts = {n: fit_platt(np.concatenate(rec.oof), y_oof) for n, rec in recs.items()}

    # The blend of the best two (by mean fold AUC), scored on the same folds.
    ranked = sorted(recs, key=lambda n: -recs[n].mean)
    pair: list[str] = []
    if params.blend and len(ranked) >= 2 and recs[ranked[1]].mean > 0.5:
        pair = ranked[:2]
        blended = CvRecord()
        oof = [0.5 * (platts[pair[0]].margin(recs[pair[0]].oof[i])
                      + platts[pair[1]].margin(recs[pair[1]].oof[i]))
               for i in range(params.cv_repeats)]  # fmt: skip
        for k, (_, te) in enumerate(splits):
            blended.fold_auc.append(auc(yc[te], oof[k // n_folds][te]))
        blended.oof = oof
        recs["blend"] = blended
        platts["blend"] = fit_platt(np.concatenate(oof), y_oof)
    cv_seconds = time.perf_counter() - started

    # Refit on the whole training part.
    cands: dict[str, Candidate] = {}
    trees = [i["trees"] for i in recs["xgboost"].info]
    n_trees = max(1, round(float(np.mean(trees))))
    booster, _ = fit_xgboost_refit(X, y, names, params, xgb_over, n_trees)
    cands["xgboost"] = Candidate("xgboost", booster, platts["xgboost"],
                                 {"trees": n_trees, "fold_trees": trees, **_xgb_info(xgb_over)})  # fmt: skip
    if "logistic" in recs:
        cs = Counter(i["C"] for i in recs["logistic"].info[:n_folds])
        C = _most_chosen(recs["logistic"].info[:n_folds])
        model, _ = fit_logistic(X, y, X, y, masked=masked, seed=params.seed, grid=(C,))
        cands["logistic"] = Candidate("logistic", model, platts["logistic"],
                                      {"C": C, "fold_C": {repr(c): n for c, n in cs.items()}, "rows": int(y.size)})  # fmt: skip
    if "tree" in recs:
        # One thread, as small_xgb: one tree on a few thousand rows took 1.0 s with two
        # threads on a busy 2-core machine, 0.15 s with one (measured).
        tree = fit_tree(X, y, names, seed=params.seed, nthread=1)
        cands["tree"] = Candidate("tree", tree, platts["tree"], {"rows": int(y.size)})
    if "popularity" in recs:
        cands["popularity"] = Candidate(
            "popularity", fit_popularity(X, y, seg_cols), platts["popularity"]
        )
    if pair:
        a, b = (platts[p] for p in pair)
        blend = blend_of([cands[p].model for p in pair], pair, [0.5 * a.a, 0.5 * b.a],
                         offset=0.5 * (a.b + b.b))  # fmt: skip
        cands["blend"] = Candidate("blend", blend, platts["blend"], {"of": pair})

    report: dict[str, dict] = {}
    for name, cand in cands.items():
        report[name] = {
            "cv": recs[name].stats(),
            "calibration": cand.platt.to_dict(),
            "info": cand.info,
        }
    chosen = max(cands, key=lambda n: recs[n].mean)  # first wins ties: xgboost, then baselines
    note = _note(chosen, recs, n_folds, params.cv_repeats, cv_seconds, pair)
    return cands, report, chosen, note


def _most_chosen(infos: list[dict]) -> float:
    """The strength chosen in most folds; ties: the stronger penalty (smaller C)."""
    cs = Counter(i["C"] for i in infos)
    return max(cs, key=lambda c: (cs[c], -c))


def _fit_xgb(X, y, fit_rows, stop_rows, names, params, over):
    from models.training.fit import fit_xgboost

    # Unnamed: a fold's booster only gives margins (see fit_xgboost).
    return fit_xgboost(X[fit_rows], y[fit_rows], X[stop_rows], y[stop_rows], None, params,
                       overrides=over, rounds=params.cv_max_rounds)  # fmt: skip


def fit_xgboost_refit(X, y, names, params, over, n_trees):
    from models.training.fit import fit_xgboost

    return fit_xgboost(X, y, None, None, names, params, overrides=over, rounds=n_trees)


def _xgb_info(over: dict) -> dict:
    return {k: over[k] for k in ("max_depth", "eta", "min_child_weight", "lambda", "subsample")}


def _margin(model, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.inplace_predict(X, predict_type="margin"), dtype=np.float64)


def _paired(a: CvRecord, b: CvRecord) -> tuple[float, float]:
    """Mean and standard error of the fold-by-fold AUC difference a - b."""
    d = np.array([x - y for x, y in zip(a.fold_auc, b.fold_auc, strict=True)
                  if x is not None and y is not None])  # fmt: skip
    if d.size < 2:
        return float(d.mean()) if d.size else 0.0, 0.0
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def _note(chosen: str, recs: dict[str, CvRecord], n_folds: int, repeats: int, seconds: float,
          pair: list[str]) -> str:  # fmt: skip
    def fig(n: str) -> str:
        s = recs[n].stats()
        return f"{NAMES[n]} {s['auc_mean']:.3f} ± {s['auc_sd']:.3f}"

    ranked = sorted(recs, key=lambda n: -recs[n].mean)
    runner = next((n for n in ranked if n != chosen), None)
    text = (f"{NAMES[chosen]} served: best mean AUC over {repeats}x{n_folds} cross-validation "
            f"folds of the training part ({fig(chosen)}")  # fmt: skip
    if runner is not None:
        diff, se = _paired(recs[chosen], recs[runner])
        text += f"; next {fig(runner)}, paired difference {diff:+.3f} ± {se:.3f} (s.e.)"
        if diff < 2 * se:
            text += ", within noise"
    text += ")"
    if chosen == "blend":
        text += (
            f"; the blend averages the calibrated log-odds of {NAMES[pair[0]]} and {NAMES[pair[1]]}"
        )
    return text + f"; refitted on the whole training part ({seconds:.1f} s of folds)"
