"""The anonymous visitors' model: what a visitor without CRM data will engage with next, learnt
from what such visitors had at the time (their session's web behaviour and the ZIP they gave).

A visitor without CRM data is not a customer with missing columns: the customer model learnt
from CRM rows, where the web and ZIP groups sit beside age and holdings that explain most of
the signal; asked about a visitor who has none of those, it answers with what is left of a
model that relied on them. This model learns from visitors as they are seen on the site.

**Rows and labels** (visitor level, from the event archive). Every visitor's events are put in
arrival order (server time, then stream id). Of their product events (``INTEREST`` types) one
position is chosen as the *cut* (a hash of the visitor, so a run is repeatable): the events
before it are what the live profile held at that moment (the features), the product events from
it on are the label (the visitor viewed, added, bought or clicked the product afterwards). Each
visitor also gives a *cold* row cut before their first product event (no web history yet, only
the ZIP when given), so the model scores a first page view too. ZIP: the last ``zip`` event
before the cut, as the live profile holds it.

**Features**: the shared ``FeatureSchema`` with the ZIP and web groups only (no CRM, no
holdings), built by the same ``FeatureBuilder`` that serving calls with ``customer=None``. The
web group comes from ``models.web_history.web_columns`` over each row's prefix shifted in time so
that every prefix ends at the same ``as_of`` (recency, decay and profile expiry then read as at
the cut), the ZIP group from ``ZipLookup``.

**Training** reuses the customer model's per-product candidates and choice
(``models.training.fit``), split by a hash of the visitor (both rows of a visitor on the same
side). The result is saved as ``<version>/anonymous/`` beside the customer model and loaded
into the same ``Bundle`` (``Bundle.anonymous``); serving uses it for every visitor without CRM
data (``campaigns.offers``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from clickstream.archive_files import Events
from clickstream.archiver import read_archive
from clickstream.catalog import load_catalog
from enrichment.demographics import demographics
from enrichment.segments import segmentation
from enrichment.zip_profile import demographic_feature_names
from models.bundle import ANONYMOUS_DIR, SCORE_CUTS_FILE
from models.fast_scorer import MultiProductScorer
from models.features import FeatureBuilder, ZipLookup, draft_schema
from models.training.dataset import Dataset, split_of
from models.training.fit import _train_product
from models.training.params import ProgressFn, TrainingError, TrainParams, _progress
from models.training.results import ProductResult, TrainingResult
from models.web_history import web_columns
from store.artifacts import events_store

INTEREST = ("product_view", "add_to_cart", "purchase", "offer_click")
MAX_VISITORS = 200_000  # a uniform sample above this (by visitor hash)
MIN_VISITORS = 50
_COLUMNS = ("type", "ts", "server_ts", "stream_id", "visitor", "product_id", "category", "zip")


def _hash(visitor: str) -> str:
    return hashlib.sha1(visitor.encode()).hexdigest()


def load_visitor_events(events_dir: Events, tenant: str) -> pd.DataFrame:
    """The archive in arrival order: type, ts (ms), visitor, product_id, category, zip."""
    table = read_archive(events_dir, tenant, columns=list(_COLUMNS))
    if table.num_rows == 0:
        return pd.DataFrame(
            {c: [] for c in ("type", "ts", "visitor", "product_id", "category", "zip")}
        )
    frame = pd.DataFrame(
        {
            "type": table.column("type").to_pandas(),
            # The event's own time (capped at its receipt), as web_history.events_frame: an
            # imported history was all received at once.
            "ts": pc.min_element_wise(
                pc.cast(table.column("ts"), "int64"), pc.cast(table.column("server_ts"), "int64")
            ).to_numpy(),
            "stream": table.column("stream_id").to_pandas(),
            "visitor": table.column("visitor").to_pandas(),
            "product_id": table.column("product_id").to_pandas(),
            "category": table.column("category").to_pandas(),
            "zip": table.column("zip").to_pandas(),
        }
    )
    # Stream ids ("<ms>-<seq>") order events that share a millisecond (one collect batch).
    seq = frame["stream"].str.split("-", n=1).str[1].fillna("0").astype(np.int64)
    frame = frame.assign(seq=seq).sort_values(["visitor", "ts", "seq"], kind="stable")
    return frame.drop(columns=["stream", "seq"]).reset_index(drop=True)


def visitor_rows(
    events: pd.DataFrame, *, max_visitors: int = MAX_VISITORS
) -> tuple[pd.DataFrame, list[dict], float]:
    """The shifted prefixes of all web rows (as events of pseudo-visitors named by row), per
    row its key, visitor hash, ZIP and the products engaged with after the cut, and the time
    (epoch seconds) at which every prefix ends."""
    ev = events[events["type"] != "identify"]
    pos = ev.groupby("visitor", sort=False).cumcount().to_numpy()
    ev = ev.assign(pos=pos)
    interest = ev[ev["type"].isin(INTEREST) & ev["product_id"].notna()]
    rows: list[dict] = []
    prefixes: list[pd.DataFrame] = []
    zips = ev[(ev["type"] == "zip") & ev["zip"].notna()]
    zip_by_visitor = {v: part for v, part in zips.groupby("visitor", sort=False)}
    by_visitor = dict(tuple(ev.groupby("visitor", sort=False)))
    visitors = [str(v) for v in interest["visitor"].unique()]
    wanted = set(visitors if len(visitors) <= max_visitors else
                 sorted(visitors, key=_hash)[:max_visitors])  # fmt: skip
    as_of_ms = int(ev["ts"].max()) if len(ev) else 0
    for name, part in interest.groupby("visitor", sort=False):
        visitor = str(name)
        if visitor not in wanted:
            continue
        key = _hash(visitor)
        n = len(part)
        cuts = [0] if n < 2 else [0, 1 + int(key[8:16], 16) % (n - 1)]
        positions = part["pos"].to_numpy()
        products = part["product_id"].to_numpy()
        whole = by_visitor[name]
        for c in cuts:
            cut_pos = int(positions[c])
            zpart = zip_by_visitor.get(name)
            zip_code = None
            if zpart is not None:
                before = zpart[zpart["pos"] < cut_pos]
                if len(before):
                    zip_code = str(before["zip"].iloc[-1])
            row_name = f"{visitor}#{c}"
            rows.append({"row": row_name, "key": key, "zip": zip_code,
                         "label": set(products[c:].tolist())})  # fmt: skip
            if c > 0:
                prefix = whole[whole["pos"] < cut_pos]
                shift = as_of_ms - int(prefix["ts"].max())
                prefix = prefix.assign(ts=prefix["ts"] + shift, visitor=row_name, customer=None)
                link = prefix.iloc[:1].assign(type="identify", customer=row_name, product_id=None,
                                              category=None)  # fmt: skip
                prefixes.extend([link, prefix])
    web_events = (
        pd.concat(prefixes, ignore_index=True).sort_values("ts", kind="stable")
        if prefixes
        else pd.DataFrame(columns=["type", "ts", "visitor", "customer", "product_id", "category"])
    )
    return web_events.reset_index(drop=True), rows, as_of_ms / 1000.0


def prepare_anonymous(
    settings,
    r,
    tenant: str,
    products: Sequence[str],
    *,
    events: pd.DataFrame | None = None,
    progress: ProgressFn | None = None,
) -> Dataset:
    """The anonymous model's rows, features (ZIP + web), labels and split; see the module."""
    if events is None:
        events = load_visitor_events(events_store(settings), tenant)
    _progress(progress, "anonymous visitors: building rows", 0, 2)
    web_events, rows, as_of = visitor_rows(events)
    if len({row["key"] for row in rows}) < MIN_VISITORS:
        raise TrainingError(
            f"only {len({row['key'] for row in rows})} visitors with product events in the archive "
            f"(at least {MIN_VISITORS} needed for the anonymous visitors' model)"
        )
    _, catalog = load_catalog(r, tenant)
    category_of = {pid: p["category"] for pid, p in catalog.items() if p.get("category")}
    cat_counts: dict[str, int] = {}
    for c in category_of.values():
        cat_counts[c] = cat_counts.get(c, 0) + 1
    table = demographics(settings)
    seg = segmentation(settings)
    has_zip = table is not None or seg is not None
    schema = draft_schema(
        {},
        products=list(products),
        categories=sorted(cat_counts, key=lambda c: (-cat_counts[c], c)),
        demographic=demographic_feature_names(settings) if table is not None else [],
        segment_version=seg.version if seg is not None else None,
        demographics_version=table.version if table is not None else None,
        has_zip=has_zip,
        has_web=True,
    )
    keys = np.asarray([row["key"] for row in rows], dtype=object)
    names = np.asarray([row["row"] for row in rows], dtype=object)
    cols: dict = {"has_crm": np.zeros(len(rows))}
    cols.update(web_columns(web_events, names, as_of=as_of, categories=schema.categories,
                            products=schema.viewed, category_of=category_of))  # fmt: skip
    if has_zip:
        cols.update(ZipLookup(settings).columns([row["zip"] for row in rows], schema))
    split = split_of(keys)
    if has_zip:
        seg_col = np.asarray(cols["zip.segment_id"])[split == 0]
        schema.fit_levels({"zip.segment_id": seg_col})
    _progress(progress, "anonymous visitors: building features", 1, 2)
    X = FeatureBuilder(schema).transform(cols, len(rows), as_of=as_of)
    index = {p: j for j, p in enumerate(products)}
    Y = np.zeros((len(rows), len(products)), dtype=bool)
    for i, row in enumerate(rows):
        for p in row["label"]:
            j = index.get(p)
            if j is not None:
                Y[i, j] = True
    snapshot = {
        "label_source": "visitor_events",
        "as_of": as_of,
        "rows": len(rows),
        "visitors": len(set(keys.tolist())),
        "events": len(events),
        "products": list(products),
        "demographics_version": schema.demographics_version,
        "segment_version": schema.segment_version,
    }
    known = set(catalog) | set(events["product_id"].dropna().unique().tolist())
    return Dataset(keys, X, Y, split, schema, list(products), known, snapshot)


def train_anonymous(
    r,
    settings,
    tenant: str,
    version: str,
    products: Sequence[str],
    params: TrainParams | None = None,
    *,
    progress: ProgressFn | None = None,
) -> TrainingResult:
    """Train the anonymous visitors' model of ``products``; raises ``TrainingError`` when the
    archive holds too few visitors or no product could be trained."""
    params = params or TrainParams()
    started = time.perf_counter()
    data = prepare_anonymous(settings, r, tenant, products, progress=progress)
    # Visitor labels are plentiful where holdings are rare; the per-product floor stays.
    data.snapshot["label_source"] = "purchases"  # _train_product's wording: "bought"
    rng = np.random.default_rng(params.seed)
    results: dict[str, ProductResult] = {}
    candidates, evaluation = {}, {}
    for j, product in enumerate(data.products):
        _progress(progress, f"anonymous visitors: training {product}", j, len(data.products))
        res, cands, ev = _train_product(data, j, params, rng)
        results[product] = res
        if cands:
            candidates[product], evaluation[product] = cands, ev
    data.snapshot["label_source"] = "visitor_events"
    result = TrainingResult(
        tenant=tenant, version=version, created_at=time.time(), params=params.to_dict(),
        schema=data.schema, products=results, candidates=candidates, snapshot=data.snapshot,
        timings={}, evaluation=evaluation,
    )  # fmt: skip
    if not candidates:
        reasons = "; ".join(f"{p}: {res.error}" for p, res in results.items())
        raise TrainingError(f"no anonymous visitors' model could be trained ({reasons})", result)
    result.scorer = MultiProductScorer.from_boosters(result.served, data.schema.feature_names)
    holdout = np.flatnonzero(data.split == 2)
    scores = result.scorer.score_batch(data.X[holdout]) if holdout.size else None
    cuts = {}
    if scores is not None:
        for k, p in enumerate(result.scorer.product_ids):
            qs = np.quantile(scores[:, k], 1.0 - np.arange(1, 100) / 100.0)
            cuts[p] = [round(float(q), 7) for q in qs]
    result.timings = {
        "total_seconds": round(time.perf_counter() - started, 3),
        "rows": int(data.X.shape[0]),
        "features": int(data.X.shape[1]),
        "products": len(data.products),
    }
    result.snapshot["score_cuts"] = cuts
    return result


def save_anonymous(folder: Path, result: TrainingResult) -> Path:
    """Write ``result`` as ``folder/anonymous/`` (complete or absent: renamed into place)."""
    target = folder / ANONYMOUS_DIR
    staging = folder / f".{ANONYMOUS_DIR}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result.save(staging)
    (staging / SCORE_CUTS_FILE).write_text(json.dumps(result.snapshot.get("score_cuts", {})))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def summary(result: TrainingResult) -> dict:
    """What the registry records of the anonymous model."""
    return {
        "products_trained": result.trained_products,
        "products_failed": {p: r.error for p, r in result.products.items() if r.status != "ok"},
        "holdout_auc": {
            p: ((res.chosen and res.candidates.get(res.chosen, {}).get("holdout")) or {}).get("auc")
            for p, res in result.products.items()
            if res.status == "ok"
        },
        "chosen": {p: res.chosen for p, res in result.products.items() if res.status == "ok"},
        "snapshot": {k: v for k, v in result.snapshot.items() if k != "score_cuts"},
        "timings": result.timings,
    }
