"""One raw value (or column) as the transform reads it: a number, days since 1970-01-01, or
text; anything unreadable becomes NaN or None, never an error."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_NAN = float("nan")


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
