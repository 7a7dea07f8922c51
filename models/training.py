"""Per-product propensity models for a tenant: data, XGBoost and baselines, choice, calibration.

``train_tenant`` reads the tenant's live CRM version (customers and holdings), its catalog and
event archive, builds one feature matrix with the shared ``FeatureBuilder``, and for every
product trains four candidates on the same split:

- ``xgboost``: binary hist trees (depth 6), early stopping on validation AUC, positives weighted
  by ``scale_pos_weight`` (negatives are subsampled for very large tenants, all positives kept);
- ``logistic``, ``tree``, ``popularity``: the baselines (models/baselines.py).

Split: each customer's keyed hash puts them in train (70%), validation (15%) or holdout (15%),
so the same customers are held out in every run of the tenant and two versions can be compared
on the same holdout. The holdout is used for evaluation only.

The candidate with the best *validation* AUC is served (the report says so plainly when it is
not XGBoost). Each candidate is Platt-calibrated on validation and the calibration is folded
into the model (models/calibration.py), so served scores are probabilities. The served models
of all products become one ``MultiProductScorer`` (the real-time artifact).

A product that cannot be modelled (no or too few positives, unknown) gets an error in the
result and the others go on; a tenant that cannot be trained at all raises ``TrainingError``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from clickstream.catalog import load_catalog
from enrichment.crm.errors import CrmError
from enrichment.crm.serving import current_version
from enrichment.crm.versions import CUSTOMERS, HOLDINGS, get_version
from enrichment.demographics import demographics
from enrichment.segments import segmentation
from enrichment.zip_profile import demographic_feature_names
from models import labels as label_rules
from models.baselines import fit_logistic, fit_popularity, fit_tree
from models.calibration import Platt, calibrate_booster, calibrate_linear, fit_platt
from models.evaluation import auc, evaluate_scores, gains_chart, log_loss
from models.fast_scorer import MultiProductScorer
from models.features import (
    FeatureBuilder,
    FeatureSchema,
    ZipLookup,
    columns_from_crm,
    draft_schema,
    holdings_matrix,
)
from models.linear_model import LinearModel
from models.web_history import load_events, purchases, web_columns
from store.config import Settings
from store.tenants import get_tenant

CANDIDATES = ("xgboost", "logistic", "tree", "popularity")
SPLIT = {"train": 70, "validation": 15, "holdout": 15}  # percent of customers, by hash
MAX_FEATURE_PRODUCTS = 60  # products with holds_ features (cross-sell)
MIN_FEATURE_HOLDERS = 10
RESULT_FORMAT = "offerwise-training-result"
RESULT_VERSION = 1
ProgressFn = Callable[[str, int, int], None]


class TrainingError(ValueError):
    """Training refused or impossible; ``result`` holds per-product reasons when there are any."""

    def __init__(self, message: str, result: TrainingResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class TrainParams:
    label_source: str = "holdings"
    label_days: int = 30
    max_rounds: int = 200
    learning_rate: float = 0.2
    max_depth: int = 6
    early_stopping: int = 20
    max_bin: int = 256
    min_positives: int = 20  # positives in the training split
    min_validation_positives: int = 5
    max_train_rows: int = 200_000  # per product; above: all positives + sampled negatives
    max_baseline_rows: int = 100_000  # the baselines learn from a subsample of those rows
    max_pos_weight: float = 50.0
    product_views: bool = True  # web_viewed_<product> features
    baselines: tuple[str, ...] = ("logistic", "tree", "popularity")
    seed: int = 0
    nthread: int = 0  # 0: all cores

    def to_dict(self) -> dict:
        d = asdict(self)
        d["baselines"] = list(self.baselines)
        return d


# ----------------------------------------------------------------------------- the data
@dataclass
class Dataset:
    keys: np.ndarray  # customer hashes (object)
    X: np.ndarray  # (n, F) float32
    Y: np.ndarray  # (n, P) bool
    split: np.ndarray  # (n,) int8: 0 train, 1 validation, 2 holdout
    schema: FeatureSchema
    products: list[str]
    known_products: set[str]
    snapshot: dict


def split_of(keys: Sequence[str] | np.ndarray) -> np.ndarray:
    """0 train / 1 validation / 2 holdout per customer hash (stable across runs)."""
    bucket = np.fromiter((int(k[:8], 16) % 100 for k in keys), dtype=np.int16, count=len(keys))
    out = np.zeros(len(keys), dtype=np.int8)
    out[bucket >= SPLIT["train"]] = 1
    out[bucket >= SPLIT["train"] + SPLIT["validation"]] = 2
    return out


def _progress(fn: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if fn is not None:
        fn(stage, done, total)


def prepare(
    r: redis.Redis,
    settings: Settings,
    tenant: str,
    *,
    products: Sequence[str] | None,
    params: TrainParams,
    schema: FeatureSchema | None = None,
    snapshot: dict | None = None,
    progress: ProgressFn | None = None,
) -> Dataset:
    """Everything the models learn from; with ``schema`` and ``snapshot`` of an earlier run,
    the same rows, features and labels again (re-evaluation)."""
    label_rules.check_source(params.label_source)
    _progress(progress, "reading CRM, catalog and events", 0, 4)
    if get_tenant(r, tenant) is None:
        raise TrainingError(f"no tenant named {tenant!r}")
    version_name = snapshot["crm_version"] if snapshot else current_version(r, tenant)
    if version_name is None:
        raise TrainingError(
            f"tenant {tenant!r} has no CRM data: import customers (and holdings) first "
            "(`offerwise crm import` or the admin API)"
        )
    try:
        version = get_version(settings, tenant, version_name)
    except CrmError as err:
        raise TrainingError(
            f"CRM version {version_name} of tenant {tenant!r} is not on disk ({err}); "
            "it may have been pruned: train again on the current version"
        ) from None
    manifest = version.manifest()
    customers = pq.read_table(version.path / CUSTOMERS)
    if customers.num_rows == 0:
        raise TrainingError(f"CRM version {version_name} of tenant {tenant!r} has no customers")
    hold_path = version.path / HOLDINGS
    holdings = pq.read_table(hold_path) if hold_path.is_file() else None
    catalog_version, catalog = load_catalog(r, tenant)
    category_of = {pid: p.get("category") for pid, p in catalog.items() if p.get("category")}
    keys = np.asarray(customers.column("customer_hash").to_pylist(), dtype=object)
    split = split_of(keys)

    # Products to model, and the products whose holdings are features (cross-sell).
    held_counts: dict[str, int] = {}
    if holdings is not None and holdings.num_rows:
        vc = holdings.column("product_id").value_counts().to_pylist()
        held_counts = {d["values"]: int(d["counts"]) for d in vc}
    if products:
        chosen = list(dict.fromkeys(p.strip() for p in products if p.strip()))
    elif snapshot:
        chosen = list(snapshot["products"])
    else:
        chosen = sorted(p for p, d in catalog.items() if d.get("active", True)) or sorted(
            held_counts
        )
    if not chosen:
        raise TrainingError(
            f"tenant {tenant!r} has no products to model: import a catalog (or holdings) first"
        )
    _progress(progress, "reading CRM, catalog and events", 1, 4)
    events = load_events(settings.events_dir, tenant)
    last_event = float(events["ts"].max()) / 1000 if len(events) else None
    first_event = float(events["ts"].min()) / 1000 if len(events) else None
    if snapshot:
        win = label_rules.LabelWindow(
            snapshot["label_source"],
            snapshot["as_of"],
            snapshot.get("label_start"),
            snapshot.get("label_end"),
        )
    else:
        try:
            win = label_rules.window(
                params.label_source,
                snapshot_time=float(manifest.get("created_at") or time.time()),
                last_event=last_event,
                label_days=params.label_days,
            )
        except label_rules.LabelError as err:
            raise TrainingError(str(err)) from None
    has_web = bool(len(events)) and bool((events["type"] == "identify").any())

    if schema is None:
        extra = [p for p, c in sorted(held_counts.items(), key=lambda kv: -kv[1])
                 if c >= MIN_FEATURE_HOLDERS and p not in chosen]  # fmt: skip
        feature_products = (chosen + extra)[:MAX_FEATURE_PRODUCTS]
        table = demographics(settings)
        seg = segmentation(settings)
        has_zip = "zip" in customers.column_names and (table is not None or seg is not None)
        cat_counts: dict[str, int] = {}
        for c in category_of.values():
            cat_counts[c] = cat_counts.get(c, 0) + 1
        categories = sorted(cat_counts, key=lambda c: (-cat_counts[c], c))
        schema = draft_schema(
            manifest.get("types") or {},
            products=feature_products,
            categories=categories,
            demographic=demographic_feature_names(settings) if table is not None else [],
            segment_version=seg.version if seg is not None else None,
            demographics_version=table.version if table is not None else None,
            has_holdings=holdings is not None,
            has_zip=has_zip,
            has_web=has_web,
            product_views=params.product_views,
        )
        schema.viewed = [p for p in schema.viewed if p in chosen] if has_web else []
        fit = True
    else:
        fit = False
    _progress(progress, "building features", 2, 4)
    web = None
    if schema.groups.get("web") and len(events):
        web = web_columns(
            events,
            keys,
            as_of=win.as_of,
            categories=schema.categories,
            products=schema.viewed,
            category_of=category_of,
        )
    cols = columns_from_crm(
        schema, customers, holdings, ZipLookup(settings) if schema.groups.get("zip") else None, web
    )
    if fit:
        train_rows = np.flatnonzero(split == 0)
        # Levels are chosen on the training split only (Arrow or numpy columns alike).
        subset = {
            k: v.take(pa.array(train_rows))
            if isinstance(v, pa.Array)
            else np.asarray(v)[train_rows]
            for k, v in cols.items()
            if k.startswith("crm.") or k == "zip.segment_id"
        }
        schema.fit_levels(subset)
    X = FeatureBuilder(schema).transform(cols, customers.num_rows, as_of=win.as_of)
    del cols
    _progress(progress, "building labels", 3, 4)
    held = (
        holdings_matrix(customers.column("customer_hash"), holdings, chosen)
        if holdings is not None
        else None
    )
    bought = None
    if win.source != "holdings":
        bought = purchases(events, keys, chosen, after_ms=int(win.label_start * 1000),
                           until_ms=int(win.label_end * 1000))  # fmt: skip
    if win.source in ("holdings", "both") and held is None:
        raise TrainingError(
            f"label source {win.source!r} needs holdings, but CRM version {version_name} has no "
            "holdings file (import one, or train on purchases)"
        )
    Y = label_rules.combine(win.source, held, bought)
    known = set(catalog) | set(held_counts)
    if len(events):
        known |= set(events["product_id"].dropna().unique().tolist())
    snap = {
        "crm_version": version_name,
        "crm_content_hash": manifest.get("content_hash"),
        "crm_created_at": manifest.get("created_at"),
        "customers": int(customers.num_rows),
        "catalog_version": catalog_version,
        "archive_first_date": _date(first_event),
        "archive_last_date": _date(last_event),
        "events": len(events),
        "demographics_version": schema.demographics_version,
        "segment_version": schema.segment_version,
        "label_source": win.source,
        "as_of": win.as_of,
        "label_start": win.label_start,
        "label_end": win.label_end,
        "products": chosen,
        "split": dict(SPLIT),
    }
    _progress(progress, "building labels", 4, 4)
    return Dataset(keys, X, Y, split, schema, chosen, known, snap)


def _date(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%d", time.gmtime(ts)) if ts is not None else None


# ----------------------------------------------------------------------------- results
@dataclass
class Candidate:
    """One trained candidate of one product: the raw model and its calibration."""

    name: str
    model: object  # xgboost.Booster or LinearModel (uncalibrated)
    platt: Platt
    info: dict = field(default_factory=dict)

    def raw_margin(self, X: np.ndarray) -> np.ndarray:
        if isinstance(self.model, LinearModel):
            return self.model.margin(X)
        return np.asarray(self.model.inplace_predict(X, predict_type="margin"), dtype=np.float64)  # type: ignore[attr-defined]

    def prob(self, X: np.ndarray) -> np.ndarray:
        return self.platt.prob(self.raw_margin(X))

    def calibrated(self) -> object:
        if isinstance(self.model, LinearModel):
            return calibrate_linear(self.model, self.platt)
        return calibrate_booster(self.model, self.platt)


@dataclass
class ProductResult:
    product_id: str
    status: str  # "ok" | "error"
    error: str | None = None
    chosen: str | None = None
    note: str | None = None
    positives: dict = field(default_factory=dict)  # split -> positives
    rows: dict = field(default_factory=dict)  # split -> rows (train: rows actually used)
    candidates: dict = field(
        default_factory=dict
    )  # name -> {validation, holdout, calibration, info}
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingResult:
    tenant: str
    version: str
    created_at: float
    params: dict
    schema: FeatureSchema
    products: dict[str, ProductResult]
    candidates: dict[str, dict[str, Candidate]]  # product -> name -> candidate
    snapshot: dict
    timings: dict
    evaluation: dict = field(default_factory=dict)  # product -> candidate -> holdout figures
    scorer: MultiProductScorer | None = None

    @property
    def served(self) -> dict[str, object]:
        """product -> calibrated served model (xgboost.Booster or LinearModel)."""
        return {
            p: self.candidates[p][res.chosen].calibrated()
            for p, res in self.products.items()
            if res.status == "ok" and res.chosen
        }

    @property
    def trained_products(self) -> list[str]:
        return [p for p, res in self.products.items() if res.status == "ok"]

    def summary(self) -> dict:
        """The JSON the CLI prints and the registry stores (no models, no curves)."""
        return {
            "tenant": self.tenant,
            "version": self.version,
            "created_at": self.created_at,
            "label_source": self.snapshot.get("label_source"),
            "features": self.schema.n_features,
            "products_trained": self.trained_products,
            "products_failed": {p: r.error for p, r in self.products.items() if r.status != "ok"},
            "products": {p: r.to_dict() for p, r in self.products.items()},
            "snapshot": self.snapshot,
            "timings": self.timings,
            "params": self.params,
        }

    # ------------------------------------------------------------- persistence
    def save(self, folder: Path | str) -> Path:
        """Write the result into ``folder`` (created; must not hold another result)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index = {p: i for i, p in enumerate(self.products)}
        (folder / "schema.json").write_bytes(self.schema.to_json())
        models_dir = folder / "models"
        served_dir = folder / "served"
        for p, cands in self.candidates.items():
            d = models_dir / str(index[p])
            d.mkdir(parents=True, exist_ok=True)
            for name, cand in cands.items():
                _write_model(d / f"{name}.json", cand.model)
        for p, model in self.served.items():
            served_dir.mkdir(exist_ok=True)
            _write_model(served_dir / f"{index[p]}.json", model)
        if self.scorer is not None:
            self.scorer.save(folder / "scorer.npz")
        (folder / "evaluation.json").write_text(json.dumps(self.evaluation))
        meta = {
            "format": RESULT_FORMAT,
            "format_version": RESULT_VERSION,
            **self.summary(),
            "product_index": index,
            "calibration": {
                p: {name: {**c.platt.to_dict(), "info": c.info} for name, c in cands.items()}
                for p, cands in self.candidates.items()
            },
        }
        (folder / "result.json").write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> TrainingResult:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError) as err:
            raise TrainingError(f"{folder} holds no readable training result ({err})") from None
        if meta.get("format") != RESULT_FORMAT:
            raise TrainingError(f"{folder}/result.json is not a training result")
        schema = FeatureSchema.from_json((folder / "schema.json").read_bytes())
        products = {p: ProductResult(**d) for p, d in meta["products"].items()}
        candidates: dict[str, dict[str, Candidate]] = {}
        for p, cals in meta.get("calibration", {}).items():
            d = folder / "models" / str(meta["product_index"][p])
            candidates[p] = {
                name: Candidate(name, _read_model(d / f"{name}.json"), Platt.from_dict(cal),
                                cal.get("info", {}))
                for name, cal in cals.items()
            }  # fmt: skip
        scorer_path = folder / "scorer.npz"
        scorer = MultiProductScorer.load(scorer_path) if scorer_path.is_file() else None
        eval_path = folder / "evaluation.json"
        evaluation = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
        return cls(
            tenant=meta["tenant"], version=meta["version"], created_at=meta["created_at"],
            params=meta["params"], schema=schema, products=products, candidates=candidates,
            snapshot=meta["snapshot"], timings=meta["timings"], evaluation=evaluation,
            scorer=scorer,
        )  # fmt: skip


def _write_model(path: Path, model: object) -> None:
    if isinstance(model, LinearModel):
        data = {"kind": "linear", "coef": model.coef.tolist(), "intercept": model.intercept,
                "fill": model.fill.tolist()}  # fmt: skip
        path.write_text(json.dumps(data))
    else:
        path.write_bytes(bytes(model.save_raw("json")))  # type: ignore[attr-defined]


def _read_model(path: Path) -> object:
    raw = path.read_bytes()
    data = json.loads(raw)
    if data.get("kind") == "linear":
        return LinearModel(coef=data["coef"], intercept=data["intercept"], fill=data["fill"])
    import xgboost as xgb

    booster = xgb.Booster(model_file=bytearray(raw))
    return booster


# ----------------------------------------------------------------------------- training
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
    X_val: np.ndarray,
    y_val: np.ndarray,
    feature_names: Sequence[str],
    params: TrainParams,
):
    """The early-stopped booster (sliced to its best iteration) and its info."""
    import xgboost as xgb

    pos = int(y_train.sum())
    p = _xgb_params(params, pos, int(y_train.size - pos))
    dtrain = xgb.QuantileDMatrix(X_train, label=y_train, feature_names=list(feature_names),
                                 max_bin=params.max_bin, nthread=p["nthread"])  # fmt: skip
    weight = np.where(np.asarray(y_val, dtype=bool), p["scale_pos_weight"], 1.0)
    dval = xgb.QuantileDMatrix(
        X_val,
        label=y_val,
        weight=weight,
        ref=dtrain,
        feature_names=list(feature_names),
        max_bin=params.max_bin,
        nthread=p["nthread"],
    )
    booster = xgb.train(
        p,
        dtrain,
        num_boost_round=params.max_rounds,
        evals=[(dval, "validation")],
        early_stopping_rounds=params.early_stopping,
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", params.max_rounds - 1))
    booster = booster[: best + 1]
    booster.feature_names = list(feature_names)
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
    if res.positives["validation"] < params.min_validation_positives:
        res.error = (
            f"only {res.positives['validation']} customers in the validation split {what} "
            f"{product!r} (at least {params.min_validation_positives} needed to choose and "
            "calibrate a model)"
        )
        return res, {}, {}

    names = data.schema.feature_names
    masked = [k for k, nm in enumerate(names) if nm == f"holds_{product}"]
    tr = _train_rows(y, rows["train"], params.max_train_rows, rng)
    res.rows["train"] = int(tr.size)
    X_tr = data.X[tr]
    X_va = data.X[rows["validation"]]
    if masked:  # the label itself must not be a feature
        X_tr[:, masked] = np.nan
        X_va[:, masked] = np.nan
    y_tr, y_va = y[tr], y[rows["validation"]]
    cands: dict[str, Candidate] = {}
    booster, info = fit_xgboost(X_tr, y_tr, X_va, y_va, names, params)
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
    chosen = max(
        cands, key=lambda nm: -1.0 if val_auc[nm] is None else val_auc[nm]
    )  # first wins ties
    res.chosen = chosen
    res.note = _note(chosen, val_auc)

    X_ho = data.X[rows["holdout"]]
    y_ho = y[rows["holdout"]]
    evaluation = {name: evaluate_scores(y_ho, cand.prob(X_ho)) for name, cand in cands.items()}
    for name, ev in evaluation.items():
        res.candidates[name]["holdout"] = headline(ev)
    if res.positives["holdout"] == 0:
        res.note += "; the holdout has no positives, so holdout figures are missing"
    res.status = "ok"
    res.seconds = round(time.perf_counter() - started, 3)
    return res, cands, evaluation


def headline(ev: dict) -> dict:
    keys = ("auc", "log_loss", "brier", "capture_at_10", "capture_at_20", "positives", "rows")
    out = {k: ev.get(k) for k in keys}
    out["ece"] = (ev.get("calibration") or {}).get("ece")
    return out


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
) -> TrainingResult:
    """Train, choose, calibrate and evaluate every product's model; see the module docstring.

    ``progress(stage, done, total)`` is called as work advances (for a progress bar).
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
    data = prepare(r, settings, tenant, products=products, params=params, progress=progress)
    prepared = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    results: dict[str, ProductResult] = {}
    candidates: dict[str, dict[str, Candidate]] = {}
    evaluation: dict[str, dict] = {}
    P = len(data.products)
    for j, product in enumerate(data.products):
        _progress(progress, f"training {product}", j, P)
        res, cands, ev = _train_product(data, j, params, rng)
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
        want = result.candidates[p][res.chosen].prob(X)
        if not np.allclose(got[:, k], want, atol=1e-4, rtol=1e-3):
            raise TrainingError(
                f"product {p!r}: the real-time scorer disagrees with the trained "
                f"{res.chosen} model (max difference {np.abs(got[:, k] - want).max():.3g})"
            )


# ----------------------------------------------------------------------------- artifacts
def results_root(settings: Settings, tenant: str) -> Path:
    return settings.artifacts_dir / "models" / tenant


def save_result(settings: Settings, result: TrainingResult) -> Path:
    """Write the result to ``<artifacts>/models/<tenant>/<version>/`` (atomically: a complete
    folder appears under its name, or nothing)."""
    root = results_root(settings, result.tenant)
    root.mkdir(parents=True, exist_ok=True)
    scratch = root / f".tmp-{uuid.uuid4().hex}"
    try:
        result.save(scratch)
        target = root / result.version
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target


def list_results(settings: Settings, tenant: str) -> list[Path]:
    """The tenant's saved results, oldest first (version ids sort by time)."""
    root = results_root(settings, tenant)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "result.json").is_file())


def latest_result_dir(settings: Settings, tenant: str) -> Path | None:
    found = list_results(settings, tenant)
    return found[-1] if found else None


# ----------------------------------------------------------------------------- re-evaluation
def evaluate_result(
    r: redis.Redis,
    settings: Settings,
    result: TrainingResult,
    *,
    progress: ProgressFn | None = None,
) -> dict:
    """Score the result's holdout again from its data snapshot with every stored candidate.

    Returns product -> candidate -> holdout figures (``evaluate_scores``), and refreshes
    ``result.evaluation``.
    """
    params = TrainParams(
        **{k: v for k, v in result.params.items() if k in TrainParams.__dataclass_fields__}
    )
    params.baselines = tuple(params.baselines)
    data = prepare(r, settings, result.tenant, products=None, params=params,
                   schema=result.schema, snapshot=result.snapshot, progress=progress)  # fmt: skip
    holdout = data.split == 2
    out: dict[str, dict] = {}
    for j, product in enumerate(data.products):
        cands = result.candidates.get(product)
        if not cands:
            continue
        y = data.Y[holdout, j]
        X = data.X[holdout]
        out[product] = {name: evaluate_scores(y, c.prob(X)) for name, c in cands.items()}
    result.evaluation = out
    return out


def comparison(result: TrainingResult) -> dict:
    """Side by side per product: each candidate's holdout headline figures, the served one,
    and in plain words whether XGBoost beat logistic regression on AUC and capture@20%."""
    out: dict[str, dict] = {}
    for product, res in result.products.items():
        if res.status != "ok":
            out[product] = {"status": "error", "error": res.error}
            continue
        ev = result.evaluation.get(product, {})
        cands = {name: headline(e) for name, e in ev.items()}
        entry = {"status": "ok", "served": res.chosen, "note": res.note, "candidates": cands}
        x, lr = cands.get("xgboost"), cands.get("logistic")
        if x and lr and x["auc"] is not None and lr["auc"] is not None:
            beats_auc = x["auc"] > lr["auc"]
            beats_cap = (x["capture_at_20"] or 0) > (lr["capture_at_20"] or 0)
            if beats_auc and beats_cap:
                verdict = "XGBoost beats logistic regression on holdout AUC and capture@20%"
            else:
                lost = [w for w, b in (("AUC", beats_auc), ("capture@20%", beats_cap)) if not b]
                verdict = (
                    f"XGBoost does NOT beat logistic regression on holdout {' and '.join(lost)}"
                )
            entry["xgboost_vs_logistic"] = {
                "beats_on_auc": beats_auc,
                "beats_on_capture_at_20": beats_cap,
                "verdict": verdict,
            }
        out[product] = entry
    return out


def write_gains_chart(result: TrainingResult, path: Path | str) -> Path:
    curves = {
        p: {name: ev.get("gains", []) for name, ev in cands.items()}
        for p, cands in result.evaluation.items()
    }
    served = {p: res.chosen for p, res in result.products.items() if res.chosen}
    return gains_chart(curves, path, served=served,
                       title=f"{result.tenant} {result.version}: cumulative gains on the holdout")  # fmt: skip
