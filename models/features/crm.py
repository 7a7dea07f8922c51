"""A CRM extract's side of the features: ``draft_schema`` from the CRM column types, and the raw
columns of every customer (``columns_from_crm``, ``holdings_matrix``) for training and batch
scoring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from enrichment.crm.coltypes import ColumnType, convert
from models.features.groups import ZipLookup
from models.features.schema import GEO_KEYS, MAX_CATEGORIES, FeatureError, FeatureSchema


def columns_from_crm(
    schema: FeatureSchema,
    customers: pa.Table,
    holdings: pa.Table | None = None,
    zips: ZipLookup | None = None,
    web: Mapping[str, np.ndarray] | None = None,
    *,
    key: str = "customer_hash",
) -> dict[str, Any]:
    """Raw columns of every row of a CRM customers table (training and batch scoring).

    ``customers``: the ``key`` column, ``zip`` and the schema's attributes (typed as a CRM
    version stores them, or as text: values are converted with the CRM import's own rules,
    unreadable ones become missing). ``holdings``: long format ``key, product_id[, quantity]``.
    ``zips``: ZIP lookup (None: no ZIP group). ``web``: raw ``web.*`` columns aligned with the
    customers' rows, with ``has_web`` (see ``models.web_history``); None: no web group.
    """
    n = customers.num_rows
    cols: dict[str, Any] = {"has_crm": np.ones(n)}
    names = set(customers.column_names)

    def column(name: str) -> pa.Array | None:
        if name not in names:
            return None
        c = customers.column(name)
        return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c

    for a in schema.crm_numeric:
        c = column(a)
        if c is None:
            continue
        kind = "boolean" if schema.crm_types.get(a) == "boolean" else "numeric"
        values, _ = convert(c, ColumnType(kind))
        cols[f"crm.{a}"] = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    for a in schema.crm_dates:
        c = column(a)
        if c is None:
            continue
        values, _ = convert(c, ColumnType("date", "ymd"))
        days = pc.cast(pc.cast(values, pa.int32()), pa.float64())
        cols[f"crm.{a}"] = days.to_numpy(zero_copy_only=False)
    for a in schema.crm_categorical:
        c = column(a)
        if c is not None:
            cols[f"crm.{a}"] = convert(c, ColumnType("categorical"))[0]
    if schema.groups.get("holdings") and schema.holdings:
        q = holdings_matrix(customers.column(key), holdings, schema.holdings, key=key)
        for j, p in enumerate(schema.holdings):
            cols[f"hold.{p}"] = q[:, j]
    if schema.groups.get("zip") and zips is not None and "zip" in names:
        cols.update(zips.columns(customers.column("zip"), schema))
    if schema.groups.get("web") and web is not None:
        cols.update(web)
    return cols


def holdings_matrix(
    keys: pa.ChunkedArray | pa.Array,
    holdings: pa.Table | None,
    products: Sequence[str],
    *,
    key: str = "customer_hash",
) -> np.ndarray:
    """(customers, products) quantities held, from the long holdings table."""
    q = np.zeros((len(keys), len(products)), dtype=np.float64)
    if holdings is None or holdings.num_rows == 0 or not products:
        return q
    for needed in (key, "product_id"):
        if needed not in holdings.column_names:
            raise FeatureError(f"holdings table has no column {needed!r}")
    prod_index = pa.array(list(products), pa.string())
    col = pc.index_in(pc.cast(holdings.column("product_id"), pa.string()), value_set=prod_index)
    rows = pc.index_in(
        pc.cast(holdings.column(key), pa.string()), value_set=pc.cast(keys, pa.string())
    )
    ok = pc.and_(pc.is_valid(col), pc.is_valid(rows))
    ok_np = ok.to_numpy(zero_copy_only=False)
    if not ok_np.any():
        return q
    if "quantity" in holdings.column_names:
        qty = pc.cast(holdings.column("quantity"), pa.float64()).to_numpy(zero_copy_only=False)
        qty = np.where(np.isnan(qty), 1.0, qty)
    else:
        qty = np.ones(holdings.num_rows)
    r = rows.to_numpy(zero_copy_only=False)[ok_np].astype(np.intp)
    c = col.to_numpy(zero_copy_only=False)[ok_np].astype(np.intp)
    np.add.at(q, (r, c), qty[ok_np])
    return q


def draft_schema(
    crm_types: Mapping[str, str],
    *,
    products: Sequence[str] = (),
    categories: Sequence[str] = (),
    demographic: Sequence[str] = (),
    segment_version: str | None = None,
    demographics_version: str | None = None,
    has_holdings: bool = False,
    has_zip: bool = False,
    has_web: bool = False,
    product_views: bool = True,
    attributes: Sequence[str] | None = None,
) -> FeatureSchema:
    """A schema before ``fit_levels``: which attributes, products, categories and groups.

    ``crm_types``: attribute -> CRM column type (the version manifest's ``types``); text
    attributes are not features (free text), unknown types are refused by name.
    """
    numeric: list[str] = []
    dates: list[str] = []
    cats: dict[str, list[str]] = {}  # levels come from fit_levels
    chosen = list(attributes) if attributes is not None else list(crm_types)
    for a in chosen:
        kind = crm_types.get(a)
        if kind in ("numeric", "boolean"):
            numeric.append(a)
        elif kind == "date":
            dates.append(a)
        elif kind == "categorical":
            cats[a] = []
        elif kind == "text":
            continue
        else:
            raise FeatureError(f"CRM attribute {a!r} has unknown type {kind!r}")
    return FeatureSchema(
        crm_numeric=numeric,
        crm_dates=dates,
        crm_categorical=cats,
        holdings=list(products) if has_holdings else [],
        demographic=list(demographic) if has_zip else [],
        geo=list(GEO_KEYS) if has_zip else [],
        segment_version=segment_version if has_zip else None,
        demographics_version=demographics_version if has_zip else None,
        categories=list(categories)[:MAX_CATEGORIES] if has_web else [],
        viewed=list(products) if has_web and product_views else [],
        groups={"crm": bool(chosen), "holdings": has_holdings, "zip": has_zip, "web": has_web},
        crm_types={a: crm_types[a] for a in chosen if a in crm_types},
    )
