"""The holdings file: what each customer already owns (long format, one row per holding).

Columns: the customer id column (same name as in the customers file unless told otherwise),
``product_id``, and optionally ``quantity`` (a number, default 1) and ``date`` (since when).
Rows are validated and their ids hashed like the customers file, after the customers file, so a
holding of a customer who is not in it (or whose row was rejected) is reported at once. Valid rows
stream into the version's ``holdings.parquet``; serving reads them back grouped per customer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from enrichment.crm.coltypes import ColumnType, as_text, best_date_order, convert
from enrichment.crm.errors import CrmError
from enrichment.crm.jsonenc import json_arrays, json_values
from enrichment.crm.reader import BatchReader, Layout, NeedExactRows
from enrichment.crm.source import Source
from enrichment.crm.validate import (
    LONG_ID,
    MAX_ID_LENGTH,
    MISSING_ID,
    WRONG_FIELDS,
    ErrorLog,
    hash_array,
    hash_ids,
    id_text,
    shown,
)
from enrichment.crm.versions import parquet_writer

PRODUCT = "product_id"
QUANTITY = "quantity"
DATE = "date"
MAX_PRODUCT_LENGTH = 128
UNKNOWN_CUSTOMER = "unknown customer (not in the customers file)"
REJECTED_CUSTOMER = "customer row was rejected"
SCHEMA = pa.schema(
    [
        pa.field("customer_hash", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("quantity", pa.float64()),
        pa.field("date", pa.date32()),
    ]
)


@dataclass
class HoldingsResult:
    source: Source
    log: ErrorLog = field(default_factory=ErrorLog)
    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    rows_erased: int = 0
    customers_with_holdings: int | None = None  # known once serving has grouped them

    def report(self) -> dict:
        return {
            "source": self.source.describe(),
            "rows_read": self.rows_read,
            "rows_imported": self.rows_imported,
            "rows_rejected": self.rows_rejected,
            "rows_skipped_erased": self.rows_erased,
            "customers_with_holdings": self.customers_with_holdings,
            **self.log.as_dict(),
        }


def check_layout(source: Source, layout: Layout, id_column: str) -> None:
    missing = [c for c in (id_column, PRODUCT) if c not in layout.columns]
    if missing:
        raise CrmError(
            f"holdings file {source.name!r} has no column {' or '.join(repr(c) for c in missing)} "
            f"(its columns: {', '.join(layout.columns[:20])}); it must have "
            f"{id_column},{PRODUCT}[,{QUANTITY}][,{DATE}]"
        )


def import_holdings(
    source: Source,
    layout: Layout,
    id_column: str,
    hasher: Callable[[str], str],
    erased: set[str],
    customers: dict[str, int],
    known: dict[str, str],
    out: Path,
    on_batch: Callable[[], None] = lambda: None,
) -> HoldingsResult:
    """Validate the holdings file against the imported customers and write ``out`` (Parquet).

    ``customers`` maps customer hash -> file row, negative when that customer row was rejected;
    ``known`` maps the customers file's (trimmed) ids to their hashes.
    """
    check_layout(source, layout, id_column)
    args = (source, layout, id_column, hasher, erased, customers, known, out, on_batch)
    try:
        return _holdings_pass(*args, exact=False)
    except NeedExactRows:  # a row with the wrong number of fields: number rows exactly
        return _holdings_pass(*args, exact=True)


def _holdings_pass(
    source: Source,
    layout: Layout,
    id_column: str,
    hasher: Callable[[str], str],
    erased: set[str],
    customers: dict[str, int],
    known: dict[str, str],
    out: Path,
    on_batch: Callable[[], None],
    exact: bool,
) -> HoldingsResult:
    wanted = [c for c in (id_column, PRODUCT, QUANTITY, DATE) if c in layout.columns]
    reader = BatchReader(source, layout, wanted, exact=exact)
    result = HoldingsResult(source)
    date_type: ColumnType | None = None
    with parquet_writer(out, SCHEMA) as writer:
        for batch, rows in reader:
            n = batch.num_rows
            result.rows_read += n
            reject = np.zeros(n, dtype=bool)
            entries: list[tuple[int, str | None, str, dict]] = []
            products = as_text(batch.column(PRODUCT))
            no_product = _np(pc.is_null(products))
            too_long = _np(
                pc.fill_null(pc.greater(pc.utf8_length(products), MAX_PRODUCT_LENGTH), False)
            )
            for i in np.flatnonzero(no_product | too_long).tolist():
                reason = (
                    "missing product_id"
                    if no_product[i]
                    else f"product_id longer than {MAX_PRODUCT_LENGTH} characters"
                )
                entries.append((int(rows[i]), PRODUCT, reason, {}))
            reject |= no_product | too_long
            quantity = pa.array(np.ones(n), pa.float64())
            if QUANTITY in batch.schema.names:
                raw = batch.column(QUANTITY)
                q, bad = convert(raw, ColumnType("numeric"))
                negative = _np(pc.fill_null(pc.less(q, 0), False))
                for i in np.flatnonzero(bad | negative).tolist():
                    reason = "not a number" if bad[i] else "negative quantity"
                    entries.append(
                        (int(rows[i]), QUANTITY, reason, {"value": shown(as_text(raw)[i].as_py())})
                    )
                reject |= bad | negative
                quantity = pc.fill_null(q, 1.0)
            dates = pa.nulls(n, pa.date32())
            if DATE in batch.schema.names:
                raw = batch.column(DATE)
                date_type = date_type or _date_type(raw, source)
                dates, bad = convert(raw, date_type)
                for i in np.flatnonzero(bad).tolist():
                    entries.append(
                        (
                            int(rows[i]),
                            DATE,
                            "not a date",
                            {"value": shown(as_text(raw)[i].as_py())},
                        )
                    )
                reject |= bad
            ids = id_text(batch.column(id_column))
            hashes = hash_ids(ids, hasher, known)
            lengths = pc.fill_null(pc.utf8_length(ids), 0).to_numpy(zero_copy_only=False)
            skip = np.zeros(n, dtype=bool)
            for i, h in enumerate(hashes):
                if h is None or lengths[i] > MAX_ID_LENGTH:
                    reject[i] = True
                    entries.append(
                        (int(rows[i]), id_column, MISSING_ID if h is None else LONG_ID, {})
                    )
                elif h in erased:
                    skip[i] = True
                elif reject[i]:
                    continue
                else:
                    row = customers.get(h)
                    if row is None or row < 0:
                        reject[i] = True
                        entries.append(
                            (
                                int(rows[i]),
                                id_column,
                                UNKNOWN_CUSTOMER if row is None else REJECTED_CUSTOMER,
                                {},
                            )
                        )
            result.log.add_batch(entries)
            keep = ~reject & ~skip
            result.rows_rejected += int(reject.sum())
            result.rows_erased += int((skip & ~reject).sum())
            # A missing id rejects its row, so every kept row has a hash.
            kept_hashes = cast(
                "list[str]", [h for h, k in zip(hashes, keep.tolist(), strict=True) if k]
            )
            result.rows_imported += len(kept_hashes)
            mask = pa.array(keep)
            writer.write_batch(
                pa.RecordBatch.from_arrays(
                    [
                        hash_array(kept_hashes),
                        products.filter(mask),
                        quantity.filter(mask),
                        dates.filter(mask),
                    ],
                    schema=SCHEMA,
                )
            )
            on_batch()
    for bad_row in reader.invalid:
        result.log.add(
            bad_row.row,
            None,
            WRONG_FIELDS,
            detail=f"expected {bad_row.expected} fields, found {bad_row.found}",
        )
    result.log.errors.sort(key=lambda e: e["row"] or 0)
    result.rows_read += len(reader.invalid)
    result.rows_rejected += len(reader.invalid)
    return result


def _np(mask: pa.Array) -> np.ndarray:
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _date_type(raw: pa.Array, source: Source) -> ColumnType:
    """The column is named ``date``, so it is read as dates in whichever day order fits best;
    values that do not fit are row errors."""
    order, _ = best_date_order(raw)
    if order is None and pc.count(as_text(raw)).as_py():
        example = as_text(raw).drop_null()[0].as_py()
        raise CrmError(
            f"holdings file {source.name!r}: column {DATE!r} does not hold dates (e.g. {shown(example)!r})"
        )
    return ColumnType("date", order or "ymd")


def build_profiles(table: pa.Table) -> pa.Table:
    """One row per customer: ``customer_hash`` and ``holdings``, the JSON list of
    [product_id, quantity, since], one item per product (quantities summed, earliest date)."""
    if table.num_rows == 0:
        return pa.table(
            {"customer_hash": pa.array([], pa.string()), "holdings": pa.array([], pa.string())}
        )
    # Grouping on small integer codes instead of 32-character hashes is several times faster.
    codes = pc.dictionary_encode(table["customer_hash"]).combine_chunks()
    coded = pa.table(
        {"c": codes.indices, "p": table["product_id"], "q": table["quantity"], "d": table["date"]}
    )
    # Single-threaded grouping keeps groups (and list items) in order of first appearance.
    agg = coded.group_by(["c", "p"], use_threads=False).aggregate([("q", "sum"), ("d", "min")])
    items = json_arrays(
        [json_values(agg["p"]), json_values(agg["q_sum"]), json_values(agg["d_min"])]
    )
    per_customer = (
        pa.table({"c": agg["c"], "item": items})
        .group_by("c", use_threads=False)
        .aggregate([("item", "list")])
    )
    lists = pc.binary_join_element_wise(
        "[", pc.binary_join(per_customer["item_list"], ","), "]", ""
    )
    hashes = codes.dictionary.take(per_customer["c"])
    return pa.table({"customer_hash": hashes, "holdings": lists}).combine_chunks()
