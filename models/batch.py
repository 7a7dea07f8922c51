"""Batch scoring for offline channels: a customers file in, one score column per product out.

Streams the file in chunks (CSV through pyarrow's streaming reader with every column read as
text, so type inference cannot differ between chunks; Parquet by row groups) through the same
feature builder and scorer as real time, so memory stays bounded by the chunk size plus the
holdings table.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from models.features import ZipLookup
from models.serving import Bundle
from store.artifacts import atomic_path
from store.config import Settings
from store.csv_cells import safe_cell, safe_row

CHUNK_ROWS = 50_000


class BatchError(ValueError):
    pass


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _csv_batches(path: Path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise BatchError(f"{path.name}: empty file, expected a header row")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=max(1 << 20, chunk_rows * 64)),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, strings_can_be_null=True
        ),
    )
    yield from reader


def read_batches(path: Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    if _is_parquet(path):
        yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
    else:
        yield from _csv_batches(path, chunk_rows)


def _read_holdings(path: Path | None, id_column: str) -> pa.Table | None:
    if path is None:
        return None
    table = (
        pq.read_table(path)
        if _is_parquet(path)
        else pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    )
    for needed in (id_column, "product_id"):
        if needed not in table.column_names:
            raise BatchError(
                f"{path.name}: column {needed!r} missing; found {', '.join(table.column_names)}"
            )
    table = table.select(
        [id_column, "product_id", *(["quantity"] if "quantity" in table.column_names else [])]
    )
    return table.cast(
        pa.schema(
            [
                pa.field(f.name, pa.string() if f.name != "quantity" else pa.float64())
                for f in table.schema
            ]
        )
    )


def score_table(
    bundle: Bundle,
    customers: pa.Table,
    holdings: pa.Table | None,
    zips: ZipLookup,
    *,
    key: str = "customer_id",
) -> np.ndarray:
    """Scores (rows, products, in ``bundle.product_ids`` order) of one table of customers keyed
    by ``key``: the same feature builder and scorer as real time. ``holdings`` (long format,
    keyed by ``key``) may hold other customers too; only this table's are used."""
    chunk_hold = (
        holdings.filter(
            pc.is_in(
                holdings.column(key),
                value_set=pc.unique(customers.column(key).cast(pa.string())),
            )
        )
        if holdings is not None
        else None
    )
    cols = bundle.builder.columns_from_crm(customers, chunk_hold, zips, None, key=key)
    X = bundle.builder.transform(cols, customers.num_rows)
    return bundle.scorer.score_batch(X)


def score_file(
    settings: Settings,
    bundle: Bundle,
    customers: Path,
    out: Path,
    holdings: Path | None = None,
    *,
    id_column: str = "customer_id",
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write ``out`` (CSV: the id as given, then ``score_<product>`` per product; a cell a
    spreadsheet would run as a formula gets a leading ``'``, see ``store.csv_cells``)."""
    hold = _read_holdings(holdings, id_column)
    zips = ZipLookup(settings)
    products = bundle.product_ids
    rows = 0
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(safe_row([id_column, *(f"score_{p}" for p in products)]))
        for batch in read_batches(customers, chunk_rows):
            table = pa.Table.from_batches([batch])
            if id_column not in table.column_names:
                raise BatchError(
                    f"{customers.name}: id column {id_column!r} missing; found {', '.join(table.column_names)}"
                )
            ids = table.column(id_column)
            scores = score_table(bundle, table, hold, zips, key=id_column)
            # Only the id is text from the upload; the scores are floats, always numbers.
            for raw_id, row in zip(ids.to_pylist(), np.round(scores, 6).tolist(), strict=True):
                writer.writerow([safe_cell(raw_id), *row])
            rows += table.num_rows
            if progress:
                progress(table.num_rows)
    return {
        "rows": rows,
        "products": len(products),
        "model_version": bundle.version,
        "out": str(out),
    }
