"""The Parquet shape of archived events and the conversion from stream entries.

Known event fields get typed columns so that training reads them without parsing; any field this
version does not know (a newer snippet, a new event type) is kept verbatim in the JSON column
``extra`` so that archiving never loses data. A value whose type does not fit its column (say a
``quantity`` of ``"2"``) is kept the same way rather than coerced silently or dropped. Entries that
cannot be archived at all (no payload, broken JSON, a required field missing) are returned as
*quarantined* so that the archiver can store them aside instead of blocking the stream forever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from store.redis_client import reply_text

TIMESTAMP = pa.timestamp("ms", tz="UTC")

# Column order is part of the file format: readers conform older files to this schema.
SCHEMA = pa.schema(
    [
        pa.field("stream_id", pa.string(), nullable=False),  # Redis stream id: arrival order
        pa.field("id", pa.string(), nullable=False),  # client event id
        pa.field("type", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),  # client clock
        pa.field("server_ts", TIMESTAMP, nullable=False),  # server clock; decides the partition
        pa.field("visitor", pa.string(), nullable=False),
        pa.field("customer", pa.string()),  # tenant-keyed hash of the CRM id, never the raw id
        pa.field("product_id", pa.string()),
        pa.field("category", pa.string()),
        pa.field("query", pa.string()),
        pa.field("quantity", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("value", pa.float64()),
        pa.field("zip", pa.string()),
        pa.field("country", pa.string()),
        pa.field("token", pa.string()),
        pa.field("url", pa.string()),
        pa.field("referrer", pa.string()),
        pa.field("page_type", pa.string()),
        pa.field("placement", pa.string()),
        pa.field("extra", pa.string()),  # JSON object of fields without a column, or null
    ]
)

REQUIRED = ("id", "type", "visitor")
REQUIRED_TIMES = ("ts", "server_ts")
STRING_COLUMNS = (
    "customer", "product_id", "category", "query", "zip", "country", "token", "url", "referrer",
    "page_type", "placement",
)  # fmt: skip
INT_COLUMNS = ("quantity",)
FLOAT_COLUMNS = ("price", "value")

# Timestamps outside years 1970..9999 cannot name a date partition.
_MAX_MS = 253_402_300_799_999
_MS_PER_DAY = 86_400_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_date_names: dict[int, str] = {}


def date_of_ms(ms: int) -> str:
    """UTC calendar date (``YYYY-MM-DD``) of an epoch-millisecond time."""
    day = ms // _MS_PER_DAY
    name = _date_names.get(day)
    if name is None:
        name = dt.date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
        if len(_date_names) < 100_000:
            _date_names[day] = name
    return name


@dataclass
class Quarantined:
    """A stream entry that cannot become a row, kept with the reason."""

    stream_id: str
    reason: str
    payload: str  # the raw payload, decoded leniently, so nothing is lost

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"stream_id": self.stream_id, "reason": self.reason, "payload": self.payload}
        )


@dataclass
class _Columns:
    values: dict[str, list] = field(default_factory=lambda: {f.name: [] for f in SCHEMA})

    def table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [pa.array(self.values[f.name], type=f.type) for f in SCHEMA], schema=SCHEMA
        )


def _as_ms(v: object) -> int | None:
    if type(v) is int:
        ms = v
    elif type(v) is float and v.is_integer():
        ms = int(v)
    else:
        return None
    return ms if 0 <= ms <= _MAX_MS else None


def _as_string(v: object) -> str | None:
    if type(v) is str:
        return v
    if type(v) in (int, float):  # a numeric id is still an id; bool is not
        return str(v)
    return None


def _payload(entry_fields: dict | list) -> bytes | str | None:
    if isinstance(entry_fields, dict):
        return entry_fields.get(b"e", entry_fields.get("e"))
    # Raw XRANGE reply: a flat [field, value, ...] list (skips redis-py's per-entry dict).
    for i in range(0, len(entry_fields) - 1, 2):
        if entry_fields[i] in (b"e", "e"):
            return entry_fields[i + 1]
    return None


def entries_to_tables(
    entries: Iterable[tuple[bytes | str, dict | list]],
) -> tuple[dict[str, pa.Table], list[Quarantined]]:
    """Stream entries -> one table per UTC date, plus the quarantined ones.

    An entry is ``(id, {b"e": payload})`` as redis-py returns it, or ``(id, [b"e", payload])``
    as the raw reply has it.

    Row order within a date follows stream order, so ``stream_id`` is ascending in each table.
    """
    by_date: dict[str, _Columns] = {}
    bad: list[Quarantined] = []
    for raw_id, entry_fields in entries:
        sid = reply_text(raw_id)
        payload = _payload(entry_fields)
        if payload is None:
            bad.append(Quarantined(sid, "entry has no 'e' field", repr(entry_fields)))
            continue
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
            bad.append(Quarantined(sid, f"payload is not JSON: {err}", text))
            continue
        reason = _check_required(event)
        if reason:
            text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
            bad.append(Quarantined(sid, reason, text))
            continue
        server_ms = _as_ms(event.pop("server_ts"))
        ts_ms = _as_ms(event.pop("ts"))
        assert server_ms is not None  # _check_required accepted it
        cols = by_date.get(date_of_ms(server_ms))
        if cols is None:
            cols = by_date[date_of_ms(server_ms)] = _Columns()
        v = cols.values
        v["stream_id"].append(sid)
        v["ts"].append(ts_ms)
        v["server_ts"].append(server_ms)
        for name in REQUIRED:
            v[name].append(event.pop(name))
        extra: dict = {}
        for name in STRING_COLUMNS:
            value = event.pop(name, None)
            if value is None:
                v[name].append(None)
                continue
            text_value = _as_string(value)
            v[name].append(text_value)
            if text_value is None:
                extra[name] = value
        for name in INT_COLUMNS:
            value = event.pop(name, None)
            if type(value) is float and value.is_integer():
                value = int(value)
            if value is None or (type(value) is int and -(2**63) <= value < 2**63):
                v[name].append(value)
            else:
                v[name].append(None)
                extra[name] = value
        for name in FLOAT_COLUMNS:
            value = event.pop(name, None)
            if value is None or type(value) in (int, float):
                v[name].append(None if value is None else float(value))
            else:
                v[name].append(None)
                extra[name] = value
        if event:
            extra.update(event)
        v["extra"].append(orjson.dumps(extra).decode() if extra else None)
    return {date: cols.table() for date, cols in by_date.items()}, bad


def _check_required(event: object) -> str | None:
    if not isinstance(event, dict):
        return "payload is not a JSON object"
    for name in REQUIRED:
        if type(event.get(name)) is not str:
            return f"field {name!r} is missing or not a string"
    for name in REQUIRED_TIMES:
        if _as_ms(event.get(name)) is None:
            return f"field {name!r} is missing or not an epoch-ms integer in years 1970..9999"
    return None


def conform(table: pa.Table, columns: Sequence[str] | None = None) -> pa.Table:
    """Bring a table read from any archive file to the current schema (or a column subset).

    Files written by older versions may lack newer columns (filled with nulls); columns unknown
    to this version are dropped.
    """
    wanted = [SCHEMA.field(c) for c in columns] if columns else list(SCHEMA)
    arrays = []
    for f in wanted:
        if f.name in table.column_names:
            col = table.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(wanted))


def row_to_event(row: dict) -> dict:
    """Inverse of the conversion for one row (as from ``Table.to_pylist``): the stream dict."""
    out = {k: v for k, v in row.items() if k not in ("stream_id", "extra") and v is not None}
    for name in REQUIRED_TIMES:
        if isinstance(out.get(name), dt.datetime):
            out[name] = (out[name] - _EPOCH) // dt.timedelta(milliseconds=1)
    if row.get("extra"):
        out.update(orjson.loads(row["extra"]))
    return out
