"""The tenant's product catalog: validation, atomic replacement, and a per-process cache.

The catalog lives in Redis as a hash of product JSON plus a product -> category hash that the
ingest script reads to credit category affinities. A re-import builds the new hashes under
temporary names and swaps them in with one MULTI/EXEC, so readers see the old catalog or the new
one, never a mix. Serving keeps a copy per process and reloads it only when the version changes.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

import orjson
import redis
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from clickstream.schemas import ID_VALIDATORS, flatten_errors
from store import keys

MAX_PRODUCTS = 100_000
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_REPORTED_ERRORS = 100
COLUMNS = ("product_id", "name", "category", "price", "margin", "url", "image_url", "active")


class CatalogError(ValueError):
    """The upload as a whole cannot be used (nothing applied)."""


class ProductSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    product_id = fields.String(
        required=True,
        validate=ID_VALIDATORS,
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    category = fields.String(required=True, validate=validate.Length(min=1, max=64))
    price = fields.Float(
        required=True, validate=validate.Range(min=0, max=10_000_000), allow_nan=False
    )
    margin = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=10_000_000),
        allow_nan=False,
    )
    url = fields.Url(
        load_default=None, allow_none=True, require_tld=False, validate=validate.Length(max=2048)
    )
    image_url = fields.Url(
        load_default=None, allow_none=True, require_tld=False, validate=validate.Length(max=2048)
    )
    active = fields.Boolean(load_default=True)


_product_schema = ProductSchema()


@dataclass
class CatalogReport:
    rows_read: int
    products: list[dict]
    errors: list[dict]
    error_count: int

    def as_dict(self, version: int | None = None) -> dict:
        return {
            "version": version,
            "rows_read": self.rows_read,
            "rows_imported": len(self.products),
            "rows_rejected": self.error_count,
            "errors": self.errors,
        }


# Named in store.keys; kept here under the names callers import.
catalog_key = keys.catalog_products
category_key = keys.catalog_categories
version_key = keys.catalog_version


def _drop_blank_optionals(row: dict) -> dict:
    """An empty CSV cell in an optional column means 'not given', so the default applies."""
    return {
        k: v
        for k, v in row.items()
        if not (v == "" and k not in ("product_id", "name", "category", "price"))
    }


def validate_rows(rows: Iterable[dict], first_row_number: int = 1) -> CatalogReport:
    """Validate product rows; row numbers count data rows from ``first_row_number``."""
    products: dict[str, dict] = {}
    errors: list[dict] = []
    error_count = 0
    rows_read = 0
    for number, raw in enumerate(rows, start=first_row_number):
        rows_read += 1
        if rows_read > MAX_PRODUCTS:
            raise CatalogError(f"catalog has more than {MAX_PRODUCTS} products")
        problems: list[tuple[str, str]] = []
        if not isinstance(raw, dict):
            problems = [("_row", "must be an object")]
        else:
            try:
                product = _product_schema.load(_drop_blank_optionals(raw))
                if product["product_id"] in products:
                    problems = [
                        ("product_id", f"duplicate of an earlier row ({product['product_id']})")
                    ]
                else:
                    products[product["product_id"]] = product
            except ValidationError as err:
                problems = flatten_errors(err.messages)
        if problems:
            error_count += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                column, reason = problems[0]
                errors.append({"row": number, "column": column, "reason": reason})
    return CatalogReport(rows_read, list(products.values()), errors, error_count)


def _checked_rows(reader: csv.DictReader) -> Iterator[dict]:
    try:
        yield from reader
    except csv.Error as err:
        raise CatalogError(f"the CSV is malformed at line {reader.line_num}: {err}") from err


def parse_csv(text: str) -> CatalogReport:
    # newline="": the csv module must see the line endings itself (quoted fields may hold them).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        raise CatalogError(f"the CSV header is malformed: {err}") from err
    if not header:
        raise CatalogError("the CSV is empty: expected a header row " + ",".join(COLUMNS))
    missing = [c for c in ("product_id", "name", "category", "price") if c not in header]
    if missing:
        raise CatalogError(
            f"the CSV header lacks required column(s) {', '.join(missing)}; found: {', '.join(header)}"
        )
    # Data rows start on line 2 of the file: report the line a spreadsheet user sees.
    return validate_rows(_checked_rows(reader), first_row_number=2)


def parse_json(payload: object) -> CatalogReport:
    if isinstance(payload, dict) and "products" in payload:
        payload = payload["products"]
    if not isinstance(payload, list):
        raise CatalogError('the JSON body must be a list of products or {"products": [...]}')
    return validate_rows(payload, first_row_number=0)


def parse_upload(body: bytes, content_type: str | None) -> CatalogReport:
    """CSV or JSON, chosen by content type, else by the first character."""
    if len(body) > MAX_UPLOAD_BYTES:
        raise CatalogError(f"upload is larger than {MAX_UPLOAD_BYTES} bytes")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CatalogError(f"the upload is not UTF-8 text (byte {err.start})") from err
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/json" or (kind not in ("text/csv",) and text.lstrip()[:1] in "[{"):
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            raise CatalogError(f"the JSON is malformed: {err}") from err
        return parse_json(payload)
    return parse_csv(text)


_SWAP = """
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('RENAME', KEYS[3], KEYS[4])
return redis.call('INCR', KEYS[5])
"""


def replace_catalog(r: redis.Redis, tenant: str, products: list[dict]) -> int:
    """Swap in a whole new catalog atomically; returns the new version number."""
    if not products:
        raise CatalogError("no valid product rows: the current catalog is left unchanged")
    staging = keys.catalog_products_staging(tenant)
    staging_cat = keys.catalog_categories_staging(tenant)
    pipe = r.pipeline(transaction=False)
    pipe.delete(staging)  # one key per DEL: redis-py's cluster pipeline takes no more
    pipe.delete(staging_cat)
    for start in range(0, len(products), 1000):
        chunk = products[start : start + 1000]
        pipe.hset(staging, mapping={p["product_id"]: orjson.dumps(p) for p in chunk})
        pipe.hset(staging_cat, mapping={p["product_id"]: p["category"] for p in chunk})
    pipe.execute()
    # One script rather than a MULTI: redis-py refuses RENAME in a Redis Cluster pipeline
    # (all five keys are the tenant's, so one slot either way).
    swapped = r.eval(
        _SWAP,
        5,
        staging,
        catalog_key(tenant),
        staging_cat,
        category_key(tenant),
        version_key(tenant),
    )
    return int(cast(int, swapped))


def load_catalog(r: redis.Redis, tenant: str) -> tuple[int, dict[str, dict]]:
    # The version and the products read at one instant. A script rather than a MULTI: redis-py's
    # cluster transactions hand back HGETALL's reply unparsed (a flat list), so both paths read it so.
    version, flat = cast(list, r.eval(_LOAD, 2, version_key(tenant), catalog_key(tenant)))
    return int(version or 0), {
        (k.decode() if isinstance(k, bytes) else k): orjson.loads(v)
        for k, v in zip(flat[::2], flat[1::2], strict=True)
    }


_LOAD = """
return {redis.call('GET', KEYS[1]) or 0, redis.call('HGETALL', KEYS[2])}
"""


@dataclass(frozen=True)
class CatalogSnapshot:
    version: int
    products: dict[str, dict]
    active_ids: tuple[str, ...]


class CatalogCache:
    """Per-process copy of each tenant's catalog, refreshed when its version moves."""

    def __init__(self) -> None:
        self._snapshots: dict[str, CatalogSnapshot] = {}
        self._lock = threading.Lock()

    def last(self, tenant: str) -> CatalogSnapshot | None:
        """The catalog this process last loaded for ``tenant`` (for answers while the store is
        away)."""
        return self._snapshots.get(tenant)

    def get(self, r: redis.Redis, tenant: str, version: int) -> CatalogSnapshot:
        snap = self._snapshots.get(tenant)
        if snap is not None and snap.version == version:
            return snap
        loaded_version, products = load_catalog(r, tenant)
        active = tuple(sorted(pid for pid, p in products.items() if p.get("active", True)))
        snap = CatalogSnapshot(loaded_version, products, active)
        with self._lock:
            self._snapshots[tenant] = snap
        return snap
