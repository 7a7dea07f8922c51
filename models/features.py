"""The one feature vector shared by training, batch scoring and real-time serving.

Two steps, so that no feature is ever computed by two different pieces of code:

1. **Raw columns**: what is known about each row (a CRM customer or a live visitor), under fixed
   names, as arrays of equal length (numpy, pyarrow or plain lists):

   - ``has_crm``, ``has_zip``, ``has_web``: 1 where the group is known for the row, else 0;
   - ``crm.<attribute>``: numeric and boolean attributes as numbers, dates as days since
     1970-01-01, categorical attributes as text (None when missing);
   - ``hold.<product>``: quantity of the product the customer holds (0 when none);
   - ``zip.<key>``: the ZIP block's numbers (``demo_*`` figures, ``latitude``, ``longitude``,
     ``segment_id``), made by ``zip_raw`` from a ``zip_profile`` block;
   - ``web.*``: the visitor-profile aggregates (``web.n_<event type>``, ``web.first_seen`` and
     ``web.last_seen`` in epoch seconds, ``web.recent_count``, ``web.cart_count``,
     ``web.bought_count``, ``web.aff.<category>`` shares, ``web.viewed.<product>`` 0/1).

   ``FeatureBuilder.row_from_live`` makes them for one visitor (serving);
   ``FeatureBuilder.columns_from_crm`` for a CRM extract (training, batch scoring), with the
   ZIP group from ``ZipLookup`` (the same ``zip_raw`` per distinct ZIP) and the web group from
   ``models.web_history`` (archived events aggregated the way the live profile aggregates them).

2. **Transform**: ``FeatureBuilder.transform(columns, as_of)`` turns raw columns into the float32
   matrix in ``FeatureSchema.feature_names`` order. It is vectorized over rows and processes big
   inputs in chunks (bounded memory), and it is the only code that does so: one row at serving
   time goes through exactly the same operations as a million at training time.

Missing groups are explicit: every feature of a group a row lacks is NaN (an anonymous visitor
has NaN for all CRM and holdings features and ``has_crm = 0``), never a zero that would read as
"holds nothing" or "is 0 years old". XGBoost learns a default direction for NaN; the logistic
regression baseline imputes (and can read the ``has_*`` flags).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from clickstream.profiles import VisitorProfile
from enrichment.crm.coltypes import ColumnType, convert
from enrichment.zip_profile import zip_profile
from store.config import Settings

FORMAT = "offerwise-feature-schema"
FORMAT_VERSION = 1

FLAGS = ("has_crm", "has_zip", "has_web")
GROUPS = ("crm", "holdings", "zip", "web")
# Event types whose profile counters become features (log1p of the count).
WEB_COUNTERS = ("page_view", "product_view", "search", "add_to_cart", "purchase", "offer_click")
WEB_SIZES = ("recent_count", "cart_count", "bought_count")
GEO_KEYS = ("latitude", "longitude")
OTHER = "_other"
# Categorical levels: the most frequent ones that cover at least this share / count of rows.
MAX_LEVELS = 12
MIN_LEVEL_SHARE = 0.005
MIN_LEVEL_COUNT = 10
MAX_SEGMENTS = 24
MAX_CATEGORIES = 30
CHUNK_ROWS = 65_536
SECONDS_PER_DAY = 86_400.0
DAYS_PER_YEAR = 365.25
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_BAD_NAME_CHARS = re.compile(r"[\[\]<\s,]")
_NAN = float("nan")
_ARROW = (pa.Array, pa.ChunkedArray)

# Operations applied to numeric raw columns by the transform.
IDENTITY, LOG1P, DAYS_SINCE, YEARS_SINCE, INDICATOR = range(5)


class FeatureError(ValueError):
    """Bad schema or input columns; the message names the column and the reason."""


# --------------------------------------------------------------------------------- schema
@dataclass
class FeatureSchema:
    """What the feature vector holds; fitted on training data, stored with every model.

    Everything the transform needs is here, so a model version carries its own definition
    of its inputs (a newer CRM extract, catalog or segmentation cannot silently shift them).
    """

    crm_numeric: list[str] = field(default_factory=list)  # numeric and boolean attributes
    crm_dates: list[str] = field(default_factory=list)
    crm_categorical: dict[str, list[str]] = field(default_factory=dict)  # attribute -> levels
    holdings: list[str] = field(default_factory=list)  # products with a holds_ feature
    demographic: list[str] = field(default_factory=list)  # zip block keys (demo_*)
    geo: list[str] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    segment_version: str | None = None
    demographics_version: str | None = None
    categories: list[str] = field(default_factory=list)  # web_aff_ features
    viewed: list[str] = field(default_factory=list)  # products with a web_viewed_ feature
    groups: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(GROUPS, False))
    crm_types: dict[str, str] = field(default_factory=dict)  # attribute -> CRM column type

    # ------------------------------------------------------------- names
    def _specs(self) -> list[tuple[str, str, str, int]]:
        """(feature name, raw key, group, op) for every scalar feature, in vector order;
        categorical blocks appear as one spec per level with op -1 (their raw key repeats)."""
        out: list[tuple[str, str, str, int]] = [(f, f, "", IDENTITY) for f in FLAGS]
        if self.groups.get("crm"):
            out += [(f"crm_{a}", f"crm.{a}", "crm", IDENTITY) for a in self.crm_numeric]
            out += [(f"crm_{a}_years", f"crm.{a}", "crm", YEARS_SINCE) for a in self.crm_dates]
            for a, levels in self.crm_categorical.items():
                out += [(f"crm_{a}={lv}", f"crm.{a}", "crm", -1) for lv in [*levels, OTHER]]
        if self.groups.get("holdings"):
            out += [(f"holds_{p}", f"hold.{p}", "crm", INDICATOR) for p in self.holdings]
        if self.groups.get("zip"):
            out += [(d, f"zip.{d}", "zip", IDENTITY) for d in self.demographic]
            out += [(f"zip_{g}", f"zip.{g}", "zip", IDENTITY) for g in self.geo]
            if self.segments:
                levels = [*map(str, self.segments), OTHER]
                out += [(f"segment={s}", "zip.segment_id", "zip", -1) for s in levels]
        if self.groups.get("web"):
            out += [(f"web_log_n_{t}", f"web.n_{t}", "web", LOG1P) for t in WEB_COUNTERS]
            out += [
                ("web_days_since_last_seen", "web.last_seen", "web", DAYS_SINCE),
                ("web_days_since_first_seen", "web.first_seen", "web", DAYS_SINCE),
            ]
            out += [(f"web_{s}", f"web.{s}", "web", IDENTITY) for s in WEB_SIZES]
            out += [(f"web_aff_{c}", f"web.aff.{c}", "web", IDENTITY) for c in self.categories]
            out += [(f"web_viewed_{p}", f"web.viewed.{p}", "web", IDENTITY) for p in self.viewed]
        return out

    @property
    def feature_names(self) -> list[str]:
        """Unique names safe for XGBoost (no '[', ']', '<', blanks or commas)."""
        names, seen = [], set()
        for name, *_ in self._specs():
            clean = _BAD_NAME_CHARS.sub("_", name)
            candidate, k = clean, 2
            while candidate in seen:
                candidate, k = f"{clean}~{k}", k + 1
            seen.add(candidate)
            names.append(candidate)
        return names

    @property
    def n_features(self) -> int:
        return len(self._specs())

    def group_of(self) -> list[str]:
        """Group of each feature ('' for the presence flags), in vector order."""
        return [g for _, _, g, _ in self._specs()]

    # ------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        data = asdict(self)
        data["segments"] = [int(s) for s in self.segments]
        return {"format": FORMAT, "version": FORMAT_VERSION, **data,
                "feature_names": self.feature_names}  # fmt: skip

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        if data.get("format") != FORMAT:
            raise FeatureError(f"not a feature schema (format {data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise FeatureError(
                f"feature schema version {data.get('version')} is not supported "
                f"(this code reads version {FORMAT_VERSION})"
            )
        names = {f for f in cls.__dataclass_fields__}
        schema = cls(**{k: v for k, v in data.items() if k in names})
        schema.groups = {g: bool(schema.groups.get(g)) for g in GROUPS}
        stored = data.get("feature_names")
        if stored is not None and list(stored) != schema.feature_names:
            raise FeatureError(
                "feature schema is inconsistent: its stored feature names differ from the ones "
                "its lists define (edited by hand, or written by other code)"
            )
        return schema

    @classmethod
    def from_json(cls, raw: bytes | str) -> FeatureSchema:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise FeatureError(f"feature schema is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise FeatureError("feature schema JSON must be an object")
        return cls.from_dict(data)

    # ------------------------------------------------------------- fitting
    def fit_levels(
        self,
        columns: Mapping[str, Any],
        *,
        max_levels: int = MAX_LEVELS,
        max_segments: int = MAX_SEGMENTS,
    ) -> FeatureSchema:
        """Choose the one-hot levels of categorical attributes and segments from training rows.

        A level is kept when it is among the ``max_levels`` most frequent and covers at least
        ``MIN_LEVEL_SHARE`` of the known values (and ``MIN_LEVEL_COUNT`` rows); all others share
        the ``_other`` column. Returns self.
        """
        for a in list(self.crm_categorical):
            values = _as_text_list(columns.get(f"crm.{a}"))
            self.crm_categorical[a] = _top_levels(values, max_levels)
        if self.groups.get("zip"):
            seg = columns.get("zip.segment_id")
            ids: list[object] = []
            if seg is not None:
                arr = np.asarray(_to_numpy(seg), dtype=np.float64)
                ids = [int(v) for v in arr[np.isfinite(arr)]]
            self.segments = sorted(int(s) for s in _top_levels(ids, max_segments))
        return self


def _top_levels(values: Sequence[object], k: int) -> list:
    known = [v for v in values if v is not None]
    if not known:
        return []
    uniq, counts = np.unique(np.asarray(known, dtype=object), return_counts=True)
    floor = max(MIN_LEVEL_COUNT, MIN_LEVEL_SHARE * len(known))
    order = sorted(
        zip(counts.tolist(), uniq.tolist(), strict=True), key=lambda t: (-t[0], str(t[1]))
    )
    return [v for c, v in order[:k] if c >= floor]


def _to_numpy(values: Any) -> Any:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values.to_numpy(zero_copy_only=False)
    return values


def _as_text_list(values: Any) -> list[str | None]:
    if values is None:
        return []
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = values.to_pylist()
    return [_text_or_none(v) for v in values]


def _text_or_none(v: object) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    s = str(v).strip()
    return s or None


# --------------------------------------------------------------------------------- scalars
def _number(v: object) -> float:
    """A raw value as float; None, text that is not a number, and infinities become NaN."""
    if v is None:
        return _NAN
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        f = float(v)
    else:
        text = v.decode() if isinstance(v, bytes) else str(v)
        low = text.strip().lower()
        if low in ("true", "false"):
            return 1.0 if low == "true" else 0.0
        try:
            f = float(text)
        except ValueError:
            return _NAN
    return f if math.isfinite(f) else _NAN


def _days(v: object) -> float:
    """A date (ISO text, date or number of days) as days since 1970-01-01."""
    if v is None:
        return _NAN
    if isinstance(v, dt.datetime):
        return float(v.date().toordinal() - _EPOCH_ORDINAL)
    if isinstance(v, dt.date):
        return float(v.toordinal() - _EPOCH_ORDINAL)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v) if math.isfinite(v) else _NAN
    try:
        return float(dt.date.fromisoformat(str(v).strip()[:10]).toordinal() - _EPOCH_ORDINAL)
    except ValueError:
        return _NAN


# --------------------------------------------------------------------------------- ZIP group
def zip_raw(block: Mapping[str, Any] | None, schema: FeatureSchema) -> dict[str, list[float]]:
    """Raw ZIP columns (one row) from a ``zip_profile`` block, typed or as stored on a profile.

    The block is known when its status is ok. A segment id from a segmentation other than the
    one the schema was fitted on means nothing to the model, so it is dropped (NaN).
    """
    if not block or block.get("status") != "ok":
        return {"has_zip": [0.0]}
    out: dict[str, list[float]] = {"has_zip": [1.0]}
    for key in schema.demographic:
        out[f"zip.{key}"] = [_number(block.get(key))]
    for key in schema.geo:
        out[f"zip.{key}"] = [_number(block.get(key))]
    seg = _number(block.get("segment_id"))
    if (
        schema.segment_version is not None
        and block.get("segment_version") != schema.segment_version
    ):
        seg = _NAN
    out["zip.segment_id"] = [seg]
    return out


class ZipLookup:
    """ZIP -> profile block, cached per distinct ZIP; batch columns through ``zip_raw``."""

    def __init__(self, settings: Settings | None = None, country: str = "US") -> None:
        self.settings = settings or Settings()
        self.country = country
        self._blocks: dict[str, dict] = {}

    def block(self, zip_code: str | None) -> dict | None:
        if not zip_code:
            return None
        found = self._blocks.get(zip_code)
        if found is None:
            found = zip_profile(zip_code, self.country, self.settings)
            if len(self._blocks) > 200_000:
                self._blocks.clear()
            self._blocks[zip_code] = found
        return found

    def columns(self, zips: Any, schema: FeatureSchema) -> dict[str, np.ndarray]:
        """Raw ZIP columns for an array of ZIP codes (one ``zip_profile`` per distinct code)."""
        arr = (
            zips
            if isinstance(zips, pa.ChunkedArray | pa.Array)
            else pa.array(list(zips), pa.string())
        )
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not pa.types.is_string(arr.type):
            arr = pc.cast(arr, pa.string())
        encoded = arr.dictionary_encode()
        uniques = encoded.dictionary.to_pylist()
        rows = [zip_raw(self.block(z), schema) for z in uniques] + [{"has_zip": [0.0]}]
        index = encoded.indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
        keys = [
            "has_zip",
            *(f"zip.{k}" for k in (*schema.demographic, *schema.geo)),
            "zip.segment_id",
        ]
        out = {}
        for key in keys:
            table = np.array([row.get(key, [_NAN])[0] for row in rows], dtype=np.float64)
            if key == "has_zip":
                table = np.nan_to_num(table)
            out[key] = table[index]
        return out


def zip_block_for(
    profile: VisitorProfile | None,
    customer: Mapping[str, Any] | None,
    zips: ZipLookup,
) -> Mapping[str, Any] | None:
    """The ZIP block serving should use: an identified customer's CRM ZIP (what training saw
    for that customer), else the ZIP the visitor typed (stored on the profile), else None."""
    if customer is not None and customer.get("zip"):
        block = zips.block(customer["zip"])
        if block is not None and block.get("status") == "ok":
            return block
    return profile.zip_block() if profile is not None else None


# --------------------------------------------------------------------------------- web group
def web_raw_from_profile(profile: VisitorProfile, schema: FeatureSchema) -> dict[str, list[float]]:
    """Raw web columns (one row) of a live visitor profile."""
    counters = profile.counters
    attrs = profile.attributes
    out: dict[str, list[float]] = {"has_web": [1.0]}
    for t in WEB_COUNTERS:
        out[f"web.n_{t}"] = [float(counters.get(t, 0))]
    out["web.first_seen"] = [_number(attrs.get("first_seen"))]
    out["web.last_seen"] = [_number(attrs.get("last_seen"))]
    out["web.recent_count"] = [float(len(profile.recent))]
    out["web.cart_count"] = [float(len(profile.cart))]
    out["web.bought_count"] = [float(len(profile.recently_bought))]
    aff = profile.affinities
    for c in schema.categories:
        out[f"web.aff.{c}"] = [float(aff.get(c, 0.0))]
    if schema.viewed:
        recent = set(profile.recent)
        for p in schema.viewed:
            out[f"web.viewed.{p}"] = [1.0 if p in recent else 0.0]
    return out


# --------------------------------------------------------------------------------- builder
class FeatureBuilder:
    """Raw columns -> float32 feature matrix, for one schema (compiled once, reused).

    The transform is a fixed, small number of numpy operations per chunk of rows (gathers and
    scatters with index arrays precomputed here), so one row costs tens of microseconds and a
    million rows run at memory speed, through the same statements.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        specs = schema._specs()
        self.feature_names = schema.feature_names
        self.n_features = F = len(specs)
        num_keys, num_cols, ops = [], [], []
        cats: dict[str, tuple[int, int]] = {}  # raw key -> (first column, width)
        group_mask = np.zeros((len(FLAGS), F), dtype=bool)
        group_row = {"crm": 0, "zip": 1, "web": 2}
        for j, (_, key, group, op) in enumerate(specs):
            if group:
                group_mask[group_row[group], j] = True
            if op < 0:
                first, width = cats.get(key, (j, 0))
                cats[key] = (first, width + 1)
            else:
                num_keys.append(key)
                num_cols.append(j)
                ops.append(op)
        assert num_keys[: len(FLAGS)] == list(FLAGS)  # the flags lead the vector
        # Internal layout: numeric raw columns sorted by operation (stable, so the flags stay
        # first), so each operation works in place on one contiguous slice.
        order = sorted(range(len(num_keys)), key=lambda i: ops[i])
        self._num_keys = [num_keys[i] for i in order]
        self._num_key_set = frozenset(self._num_keys)
        self._num_cols = np.array([num_cols[i] for i in order], dtype=np.intp)
        sorted_ops = [ops[i] for i in order]
        self._op_slices = [
            (op, sorted_ops.index(op), len(sorted_ops) - sorted_ops[::-1].index(op))
            for op in (LOG1P, DAYS_SINCE, YEARS_SINCE, INDICATOR)
            if op in sorted_ops
        ]
        self._cats: list[tuple[str, int, int, dict, bool, np.ndarray]] = []
        for key, (first, width) in cats.items():
            if key == "zip.segment_id":
                index: dict = {float(s): i for i, s in enumerate(schema.segments)}
            else:
                attr = key.split(".", 1)[1]
                index = {lv: i for i, lv in enumerate(schema.crm_categorical[attr])}
            table = np.vstack(
                [np.eye(width, dtype=np.float32), np.full((1, width), np.nan, np.float32)]
            )
            self._cats.append((key, first, width, index, key == "zip.segment_id", table))
        self._group_mask = group_mask  # (flags, F): features NaN when the flag is 0
        self._grouped = bool(group_mask.any())

    # ------------------------------------------------------------- the transform
    def transform(
        self, columns: Mapping[str, Any], n: int | None = None, as_of: float | None = None
    ) -> np.ndarray:
        """The feature matrix (n, n_features) float32 of raw columns, at time ``as_of``
        (epoch seconds; default now) for the time-relative features (recency, tenure).

        A raw column that is absent counts as missing (NaN) for every row; the presence
        flags default to 0.
        """
        n = _row_count(columns) if n is None else n
        as_of = time.time() if as_of is None else float(as_of)
        out = np.empty((n, self.n_features), dtype=np.float32)
        cols = columns
        # (One row, as serving builds it, is plain lists: no scan needed. NumPy reads a
        # length-1 Arrow array through its array protocol anyway.)
        arrow = n > 1 and [
            k for k, v in columns.items() if isinstance(v, _ARROW) and k in self._num_key_set
        ]
        if arrow:  # numeric columns given as Arrow arrays: numpy once, not per chunk
            cols = dict(columns)
            for k in arrow:
                cols[k] = _to_numpy(columns[k])
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            self._chunk(cols, start, stop, n, out[start:stop], as_of)
        return out

    def _chunk(
        self,
        cols: Mapping[str, Any],
        start: int,
        stop: int,
        n: int,
        out: np.ndarray,
        as_of: float,
    ) -> None:
        m = stop - start
        missing = [_NAN] * m
        if start == 0 and stop == n:
            raw = [cols.get(k, missing) for k in self._num_keys]
        else:
            raw = [_slice(cols.get(k), start, stop, missing) for k in self._num_keys]
        vals = np.array(raw, dtype=np.float64).reshape(len(self._num_keys), m)
        vals[np.isinf(vals)] = np.nan
        nf = len(FLAGS)
        flags = vals[:nf] == 1.0
        vals[:nf] = flags
        for op, lo, hi in self._op_slices:
            v = vals[lo:hi]
            if op == LOG1P:
                np.maximum(v, 0.0, out=v)
                np.log1p(v, out=v)
            elif op == DAYS_SINCE:
                np.subtract(as_of, v, out=v)
                np.maximum(v, 0.0, out=v)
                v /= SECONDS_PER_DAY
            elif op == YEARS_SINCE:
                np.subtract(as_of / SECONDS_PER_DAY, v, out=v)
                v /= DAYS_PER_YEAR
            else:  # INDICATOR: 1 when held (> 0), 0 when not, NaN stays NaN
                np.maximum(v, 0.0, out=v)
                np.sign(v, out=v)
        out[:, self._num_cols] = vals.T
        for key, first, width, index, numeric, table in self._cats:
            # table[code] is the one-hot row of a level; its last row (code -1) is all NaN.
            codes = _codes(cols.get(key), start, stop, index, width - 1, numeric)
            out[:, first : first + width] = table[codes]
        if self._grouped and not flags.all():
            # (m, F): a feature is NaN where the flag of its group is 0.
            out[(~flags).T @ self._group_mask] = np.nan

    # ------------------------------------------------------------- live rows
    def row_from_live(
        self,
        profile: VisitorProfile | None,
        customer: Mapping[str, Any] | None,
        zip_block: Mapping[str, Any] | None,
    ) -> dict[str, list]:
        """Raw columns (one row) of a visitor: live profile, CRM profile (``get_customer``)
        and ZIP block (``zip_profile`` output or ``profile.zip_block()``); any may be None."""
        s = self.schema
        cols: dict[str, list] = {"has_crm": [0.0], "has_zip": [0.0], "has_web": [0.0]}
        if customer is not None:
            cols["has_crm"] = [1.0]
            attrs = customer.get("attributes") or {}
            for a in s.crm_numeric:
                cols[f"crm.{a}"] = [_number(attrs.get(a))]
            for a in s.crm_dates:
                cols[f"crm.{a}"] = [_days(attrs.get(a))]
            for a in s.crm_categorical:
                cols[f"crm.{a}"] = [_text_or_none(attrs.get(a))]
            if s.groups.get("holdings"):
                held: dict[str, float] = {}
                for h in customer.get("holdings") or ():
                    q = _number(h.get("quantity"))
                    held[h.get("product_id")] = held.get(h.get("product_id"), 0.0) + (
                        1.0 if q != q else q
                    )
                for p in s.holdings:
                    cols[f"hold.{p}"] = [held.get(p, 0.0)]
        if s.groups.get("zip") and zip_block:
            cols.update(zip_raw(zip_block, s))
        if s.groups.get("web") and profile is not None and profile.known:
            cols.update(web_raw_from_profile(profile, s))
        return cols

    def live_vector(
        self,
        profile: VisitorProfile | None,
        customer: Mapping[str, Any] | None,
        zip_block: Mapping[str, Any] | None,
        now: float | None = None,
    ) -> np.ndarray:
        """The float32 feature vector (n_features,) of one visitor, ready for the scorer."""
        return self.transform(self.row_from_live(profile, customer, zip_block), 1, now)[0]

    # ------------------------------------------------------------- batch rows
    def columns_from_crm(
        self,
        customers: pa.Table,
        holdings: pa.Table | None = None,
        zips: ZipLookup | None = None,
        web: Mapping[str, np.ndarray] | None = None,
        *,
        key: str = "customer_hash",
    ) -> dict[str, Any]:
        """Raw columns of a CRM extract (see ``columns_from_crm``) for this schema."""
        return columns_from_crm(self.schema, customers, holdings, zips, web, key=key)


def _row_count(columns: Mapping[str, Any]) -> int:
    for v in columns.values():
        return len(v)
    raise FeatureError("no columns given: cannot tell the number of rows")


def _slice(values: Any, start: int, stop: int, missing: list) -> Any:
    if values is None:
        return missing
    if isinstance(values, pa.Array):
        values = values.to_numpy(zero_copy_only=False)
    return values if start == 0 and len(values) == stop else values[start:stop]


def _codes(
    values: Any, start: int, stop: int, index: dict, other: int, numeric: bool
) -> np.ndarray:
    """Level index per row: a kept level's position, ``other`` for any other value, -1 missing.

    Every path applies ``_code``'s rule (dictionary-encoded Arrow arrays map their distinct
    values, numeric arrays compare against each level), so one row and a million agree.
    """
    m = stop - start
    if values is None:
        return np.full(m, -1, dtype=np.intp)
    if isinstance(values, pa.Array | pa.ChunkedArray):
        if start or len(values) != m:
            values = values.slice(start, m)
        encoded = values.dictionary_encode()
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        lookup = np.array(
            [_code(v, index, other, numeric) for v in encoded.dictionary.to_pylist()] + [-1],
            dtype=np.intp,
        )
        idx = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
        return lookup[idx]
    if not (start == 0 and len(values) == m):
        values = values[start:stop]
    if numeric and m > 16:
        arr = np.asarray(values, dtype=np.float64)
        out = np.full(m, -1, dtype=np.intp)
        out[np.isfinite(arr)] = other
        for level, i in index.items():
            out[arr == level] = i
        return out
    return np.array([_code(v, index, other, numeric) for v in values], dtype=np.intp)


def _code(v: object, index: dict, other: int, numeric: bool) -> int:
    if numeric:
        f = _number(v)
        return -1 if f != f else index.get(f, other)
    t = _text_or_none(v)
    return -1 if t is None else index.get(t, other)


# --------------------------------------------------------------------------------- CRM extract
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
    numeric, dates, cats = [], [], {}
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
