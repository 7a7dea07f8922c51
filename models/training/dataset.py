"""What the models learn from: the tenant's CRM version, catalog and event archive made into
one feature matrix, the labels and the split (``prepare``), the same again for an earlier run's
snapshot (re-evaluation)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

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
from models.features import (
    FeatureBuilder,
    FeatureSchema,
    ZipLookup,
    columns_from_crm,
    draft_schema,
    holdings_matrix,
)
from models.training.params import (
    ProgressFn,
    TrainingEngine,
    TrainingError,
    TrainParams,
    _progress,
)
from models.web_history import load_events, purchases, web_columns
from store.artifacts import events_store
from store.config import Settings
from store.tenants import get_tenant

SPLIT = {"train": 70, "validation": 15, "holdout": 15}  # percent of customers, by hash
MAX_FEATURE_PRODUCTS = 60  # products with holds_ features (cross-sell)
MIN_FEATURE_HOLDERS = 10


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
    engine: TrainingEngine | None = None,
) -> Dataset:
    """Everything the models learn from; with ``schema`` and ``snapshot`` of an earlier run,
    the same rows, features and labels again (re-evaluation). ``engine`` reads the archive
    (a Dask cluster, in partitions) instead of this process."""
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
    category_of = {pid: p["category"] for pid, p in catalog.items() if p.get("category")}
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
    events = (engine.load_events if engine else load_events)(events_store(settings), tenant)
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
        # Only a holdings window has no label period.
        assert win.label_start is not None and win.label_end is not None
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
