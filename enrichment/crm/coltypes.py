"""Column types of a CRM extract: inference from a sample and vectorised conversion.

Values arrive as text (CSV) or typed (Parquet). Conversion never raises on a bad value: it returns
the converted Arrow array and a mask of the values that were present but could not be read, so
the validator can reject exactly those rows and name row, column and reason.

Inference looks at the non-empty values of a sample: a column is numeric when at least 95% of
them are numbers (the rest then become row errors, which is what an admin wants to hear about a
typo), boolean when every value is a yes/no word, a date when 95% parse in one day order, else
categorical. Numbers written with a leading zero ("00123") are identifiers, hence categorical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from enrichment.crm.errors import CrmError

KINDS = ("numeric", "categorical", "text", "date", "boolean", "skip")
ARROW_TYPES = {
    "numeric": pa.float64(),
    "categorical": pa.string(),
    "text": pa.string(),
    "date": pa.date32(),
    "boolean": pa.bool_(),
}
INFER_SHARE = 0.95
DATE_ORDERS = ("ymd", "mdy", "dmy")
MIN_YEAR, MAX_YEAR = 1800, 2200

_NUMBER_RE = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_LEADING_ZERO_RE = r"^[+-]?0[0-9]"
_TIME = r"(?:[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?\s*(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
_DATE_RES = {
    "ymd": rf"^(?P<a>[0-9]{{4}})[-/.](?P<b>[0-9]{{1,2}})[-/.](?P<c>[0-9]{{1,2}}){_TIME}$",
    "mdy": rf"^(?P<a>[0-9]{{1,2}})[-/.](?P<b>[0-9]{{1,2}})[-/.](?P<c>[0-9]{{4}}){_TIME}$",
    "dmy": rf"^(?P<a>[0-9]{{1,2}})[-/.](?P<b>[0-9]{{1,2}})[-/.](?P<c>[0-9]{{4}}){_TIME}$",
}
_DATE_FIELDS = {"ymd": ("a", "b", "c"), "mdy": ("c", "a", "b"), "dmy": ("c", "b", "a")}  # y, m, d
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")
_BOOL_WORDS = pa.array(TRUE_WORDS + FALSE_WORDS)
_TRUE = pa.array(TRUE_WORDS)
_ZIP_RE = r"^(?P<zip>[0-9]{1,5})(?:-[0-9]{4}|\.0+)?$"


@dataclass(frozen=True)
class ColumnType:
    kind: str
    date_order: str | None = None  # ymd / mdy / dmy for dates

    def spec(self) -> str:
        return f"{self.kind}:{self.date_order}" if self.date_order else self.kind

    @property
    def arrow(self) -> pa.DataType:
        return ARROW_TYPES[self.kind]


def parse_type_spec(spec: str, column: str = "") -> ColumnType:
    """``numeric``, ``categorical``, ``text``, ``boolean``, ``skip``, ``date`` or ``date:dmy``."""
    kind, _, order = spec.strip().lower().partition(":")
    where = f" for column {column!r}" if column else ""
    if kind not in KINDS:
        raise CrmError(
            f"unknown type {spec!r}{where}; use one of {', '.join(KINDS)} (dates: date:ymd|mdy|dmy)"
        )
    if order and (kind != "date" or order not in DATE_ORDERS):
        raise CrmError(
            f"bad type {spec!r}{where}: only dates take a day order (date:ymd, date:mdy, date:dmy)"
        )
    return ColumnType(kind, order or None)


def parse_types_option(text: str | None) -> dict[str, str]:
    """``age=numeric,joined=date:dmy`` -> {"age": "numeric", "joined": "date:dmy"} (checked)."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        column, sep, spec = item.partition("=")
        if not sep or not column.strip():
            raise CrmError(f"--types item {item.strip()!r} must look like column=type")
        out[column.strip()] = parse_type_spec(spec, column.strip()).spec()
    return out


def as_text(array: pa.Array) -> pa.Array:
    """Trimmed text with empty strings as nulls, whatever the input type."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type) or not pa.types.is_string(array.type):
        array = pc.cast(array, pa.string())
    array = pc.utf8_trim_whitespace(array)
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def infer_type(sample: pa.Array) -> ColumnType:
    """The most specific type that fits the sample (see the module docstring)."""
    t = sample.type
    if pa.types.is_boolean(t):
        return ColumnType("boolean")
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return ColumnType("numeric")
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return ColumnType("date")
    values = as_text(sample).drop_null()
    n = len(values)
    if n == 0:
        return ColumnType("categorical")
    if pc.all(pc.is_in(pc.utf8_lower(values), value_set=_BOOL_WORDS)).as_py():
        words = set(pc.unique(pc.utf8_lower(values)).to_pylist())
        if not words <= {"0", "1"}:
            return ColumnType("boolean")
    numeric = pc.match_substring_regex(values, _NUMBER_RE)
    if pc.sum(numeric).as_py() >= INFER_SHARE * n:
        if pc.any(pc.match_substring_regex(values, _LEADING_ZERO_RE)).as_py():
            return ColumnType("categorical")
        return ColumnType("numeric")
    order, share = best_date_order(values)
    if order is not None and share >= INFER_SHARE:
        return ColumnType("date", order)
    return ColumnType("categorical")


def best_date_order(values: pa.Array) -> tuple[str | None, float]:
    """The day order that reads most of the (non-null) values, and the share it reads.

    Ties keep the earlier order: ISO year-first, then US month-first.
    """
    text = as_text(values).drop_null()
    if len(text) == 0:
        return None, 0.0
    best: tuple[int, str | None] = (0, None)
    for order in DATE_ORDERS:
        _, bad = _parse_dates(text, order)
        ok = len(text) - int(bad.sum())
        if ok > best[0]:
            best = (ok, order)
    return best[1], best[0] / len(text)


def convert(array: pa.Array, ctype: ColumnType) -> tuple[pa.Array, np.ndarray]:
    """(converted array, mask of values present but unreadable as ``ctype``)."""
    kind = ctype.kind
    t = array.type
    if kind == "numeric" and (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    ):
        values = pc.cast(array, pa.float64())
        finite = pc.fill_null(pc.is_finite(values), True)
        return pc.if_else(finite, values, pa.scalar(None, pa.float64())), _mask(pc.invert(finite))
    if kind == "boolean" and pa.types.is_boolean(t):
        return array, _none(len(array))
    if kind == "date" and (pa.types.is_date(t) or pa.types.is_timestamp(t)):
        return pc.cast(array, pa.date32()), _none(len(array))
    text = as_text(array)
    present = pc.is_valid(text)
    if kind in ("categorical", "text"):
        return text, _none(len(array))
    if kind == "numeric":
        try:  # the common case, a clean column, needs no per-value pattern check
            values = pc.cast(text, pa.float64())
            ok = pc.or_(pc.is_null(values), pc.is_finite(values))
            if (
                pc.all(ok).as_py()
                and not pc.any(pc.match_substring_regex(text, r"[a-zA-Z]")).as_py()
            ):
                return values, _none(len(array))
        except pa.ArrowInvalid:
            pass
        ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER_RE), False)
        values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
        ok = pc.and_(ok, pc.fill_null(pc.is_finite(values), False))
        values = pc.if_else(ok, values, pa.scalar(None, pa.float64()))
    elif kind == "boolean":
        lower = pc.utf8_lower(text)
        ok = pc.fill_null(pc.is_in(lower, value_set=_BOOL_WORDS), False)
        values = pc.if_else(ok, pc.is_in(lower, value_set=_TRUE), pa.scalar(None, pa.bool_()))
    elif kind == "date":
        values, bad = _parse_dates(text, ctype.date_order or "ymd")
        return values, _mask(bad)
    else:
        raise CrmError(f"cannot convert to {kind!r}")
    return values, _mask(pc.and_(present, pc.invert(ok)))


def _parse_dates(text: pa.Array, order: str) -> tuple[pa.Array, pa.Array]:
    """Dates in one day order; (date32 array, bad mask). Impossible days (Feb 30) are bad."""
    parts = pc.extract_regex(text, _DATE_RES[order])
    matched = pc.fill_null(pc.is_valid(parts), False)
    y_name, m_name, d_name = _DATE_FIELDS[order]

    def field(name: str) -> pa.Array:
        raw = pc.struct_field(parts, name)
        return pc.cast(pc.if_else(matched, raw, pa.scalar("0")), pa.int32())

    y, m, d = field(y_name), field(m_name), field(d_name)
    plausible = pc.and_(
        pc.and_(pc.greater_equal(y, MIN_YEAR), pc.less_equal(y, MAX_YEAR)),
        pc.and_(pc.and_(pc.greater_equal(m, 1), pc.less_equal(m, 12)), pc.greater_equal(d, 1)),
    )
    ok = pc.and_(matched, plausible)
    safe_y = pc.if_else(ok, y, pa.scalar(2000, pa.int32()))
    safe_m = pc.if_else(ok, m, pa.scalar(1, pa.int32()))
    safe_d = pc.if_else(ok, d, pa.scalar(1, pa.int32()))
    days = _days_from_civil(
        safe_y.to_numpy(zero_copy_only=False),
        safe_m.to_numpy(zero_copy_only=False),
        safe_d.to_numpy(zero_copy_only=False),
    )
    dm = _days_in_month(
        safe_y.to_numpy(zero_copy_only=False), safe_m.to_numpy(zero_copy_only=False)
    )
    ok_np = ok.to_numpy(zero_copy_only=False) & (safe_d.to_numpy(zero_copy_only=False) <= dm)
    values = pa.array(days.astype(np.int32), type=pa.int32(), mask=~ok_np).cast(pa.date32())
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    return values, pa.array(present & ~ok_np)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 for proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y.astype(np.int64) - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m.astype(np.int64) + 9) % 12
    doy = (153 * mp + 2) // 5 + d.astype(np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    table = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    return table[np.clip(m, 1, 12) - 1] + ((m == 2) & leap)


def normalize_zip(array: pa.Array, country: str = "US") -> tuple[pa.Array, np.ndarray]:
    """US ZIPs as 5-digit strings (leading zeros restored, ZIP+4 cut); (zips, bad mask).

    Other countries' postal codes are kept as trimmed upper-case text.
    """
    if pa.types.is_floating(array.type):
        array = pc.cast(
            pc.if_else(pc.is_finite(array), array, pa.scalar(None, array.type)), pa.int64()
        )
    text = as_text(array)
    if country.upper() != "US":
        return pc.utf8_upper(text), _none(len(array))
    parts = pc.extract_regex(text, _ZIP_RE)
    ok = pc.fill_null(pc.is_valid(parts), False)
    digits = pc.if_else(ok, pc.struct_field(parts, "zip"), pa.scalar(None, pa.string()))
    zips = pc.utf8_lpad(digits, 5, "0")
    present = pc.is_valid(text)
    return zips, _mask(pc.and_(present, pc.invert(ok)))


def _mask(boolean: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(boolean, False).to_numpy(zero_copy_only=False), dtype=bool)


def _none(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)
