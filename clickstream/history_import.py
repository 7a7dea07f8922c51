"""Import a tenant's existing analytics history (CSV or Parquet) into its event archive.

A tenant that starts with Offerwise has months of web history elsewhere; training on
purchases needs behaviour *before* each purchase, so that history is worth importing. Each
row is one event in the collect shape (the fields of ``EventSchema``) plus its ``visitor``, and
its own time ``ts`` (epoch milliseconds, or an ISO 8601 time in a CSV) is required: history
without times cannot be placed before or after anything.

- **Validated like collect**: the same ``EventSchema`` (types, ids, required field per event
  type, ``ts`` after 2000 and not in the future), plus the visitor id rule of the batch
  envelope. A bad row is reported by row number, field and reason; the good rows go in.
- **Deduplicated by event id**: a (visitor, id) pair already in the archive, or earlier in the
  file, is counted as a duplicate and not written again (the archive's readers dedupe on the
  same pair), so an import can be re-run after a partial failure.
- **Written by the archive's own writer**: the events go through the tenant's event stream
  in chunks and the ``Archiver`` moves each chunk into the Parquet archive (staging, commit,
  promote: crash safe, nothing twice). Live profiles, popularity and counters are not touched:
  the events are history, not traffic. Their ``server_ts`` is the import time (when the server
  received them); training windows use the event's own ``ts`` (models/web_history.py).
- A raw ``customer_id`` of an ``identify`` event is replaced by the tenant-keyed hash before
  anything is stored, as collect does.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import redis
from marshmallow import ValidationError, fields

from clickstream.archive_files import Events
from clickstream.archiver import Archiver, read_archive
from clickstream.schemas import ID_VALIDATORS, EventSchema, Text, flatten_errors
from store import keys
from store.redis_client import reply_text
from store.tenants import Tenant

CHUNK_EVENTS = 10_000  # stream entries per archive round (the archiver's batch is 20,000)
MAX_REPORTED_ERRORS = 100
INT_FIELDS = ("ts", "quantity")
FLOAT_FIELDS = ("price", "value")


class HistoryImportError(ValueError):
    """The file cannot be imported at all (unreadable, no visitor/id/type/ts columns...)."""


class _ImportEventSchema(EventSchema):
    """A collect event with its visitor (the batch envelope's field) and a required ``ts``."""

    visitor = Text(required=True, validate=ID_VALIDATORS)
    ts = fields.Integer(required=True, strict=True)


_schema = _ImportEventSchema()


@dataclass
class ImportReport:
    tenant: str
    file: str
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict] = field(default_factory=list)
    first_ts: int | None = None
    last_ts: int | None = None
    archived_batches: int = 0
    seconds: float = 0.0

    def reject(self, row: int, event_id: object, column: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            eid = event_id if isinstance(event_id, str) else None
            self.errors.append({"row": row, "id": eid, "field": column, "reason": reason})

    def to_dict(self) -> dict:
        def iso(ms: int | None) -> str | None:
            if ms is None:
                return None
            return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")

        return {
            "tenant": self.tenant,
            "file": self.file,
            "rows": self.rows,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "first_event": iso(self.first_ts),
            "last_event": iso(self.last_ts),
            "archived_batches": self.archived_batches,
            "seconds": round(self.seconds, 3),
        }


def _read_rows(path: Path) -> Iterator[dict]:
    """The file's rows as dicts (CSV cells as text, blanks dropped; Parquet typed)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            _check_columns(names)
            for batch in pf.iter_batches(batch_size=CHUNK_EVENTS):
                batch = _timestamps_to_ms(batch)
                for row in batch.to_pylist():
                    yield {k: v for k, v in row.items() if v is not None}
            return
        if suffix not in (".csv", ".txt"):
            raise HistoryImportError(f"{path.name}: expected a .csv or .parquet file")
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            header = next(csv.reader(fh), [])
        _check_columns(header)
        # Every cell as text, as a JSON body would not have typed it either: _coerce decides.
        opts = pacsv.ConvertOptions(column_types={n: pa.string() for n in header},
                                    strings_can_be_null=False)  # fmt: skip
        with pacsv.open_csv(path, convert_options=opts,
                            read_options=pacsv.ReadOptions(block_size=1 << 22)) as reader:  # fmt: skip
            for batch in reader:
                for row in batch.to_pylist():
                    yield {k: v for k, v in row.items() if v not in (None, "")}
    except (pa.ArrowInvalid, OSError) as err:
        raise HistoryImportError(f"{path.name}: cannot read the file ({err})") from None


def _timestamps_to_ms(batch: pa.RecordBatch) -> pa.RecordBatch:
    cols = []
    for col in batch.columns:
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("ms", tz=col.type.tz)).cast(pa.int64())
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _check_columns(names: list[str]) -> None:
    missing = [c for c in ("id", "type", "ts", "visitor") if c not in names]
    if missing:
        raise HistoryImportError(
            f"missing column(s) {', '.join(missing)}: each row is a collect event (id, type, "
            "ts in epoch milliseconds, product_id...) with its visitor"
        )


def _coerce(row: dict) -> dict:
    """CSV text to the JSON types collect receives (what a JSON body would have held);
    a value that is not a number stays text and the schema reports it."""
    out = dict(row)
    for name in INT_FIELDS:
        v = out.get(name)
        if isinstance(v, str):
            text = v.strip()
            if text.lstrip("-").isdigit():
                out[name] = int(text)
            elif name == "ts":
                try:  # an ISO 8601 time (no zone: UTC)
                    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                    if when.tzinfo is None:
                        when = when.replace(tzinfo=dt.UTC)
                    out[name] = int(when.timestamp() * 1000)
                except ValueError:
                    pass
    for name in FLOAT_FIELDS:
        v = out.get(name)
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                out[name] = float(v)
    return out


def _archived_pairs(events: Events, tenant: str) -> set[tuple[str, str]]:
    table = read_archive(events, tenant, columns=["visitor", "id"])
    return set(
        zip(table.column("visitor").to_pylist(), table.column("id").to_pylist(), strict=True)
    )


def import_history(
    r: redis.Redis,
    events: Events,
    tenant: Tenant,
    path: Path,
    *,
    archiver: Archiver | None = None,
    lock_wait_s: float = 120.0,
) -> ImportReport:
    """Validate, deduplicate and archive the events of ``path``; see the module docstring.

    Raises ``HistoryImportError`` for a file that cannot be read at all."""
    started = time.perf_counter()
    report = ImportReport(tenant.name, path.name)
    archiver = archiver or Archiver(r, events)
    seen = _archived_pairs(events, tenant.name)
    erased = {reply_text(m) for m in r.smembers(keys.erased_people(tenant.name))}
    stream = keys.event_stream(tenant.name)
    now_ms = int(time.time() * 1000)
    chunk: list[bytes] = []

    def flush() -> None:
        if not chunk:
            return
        pipe = r.pipeline(transaction=False)
        for payload in chunk:
            pipe.xadd(stream, {"e": payload})
        pipe.execute()
        chunk.clear()
        result = archiver.archive_tenant(tenant.name, lock_wait_s=lock_wait_s, compact=False)
        if result.skipped:
            raise HistoryImportError(
                f"the archive of {tenant.name!r} stayed locked for {lock_wait_s:g} s; the "
                "imported events wait in the stream and the worker's archiver will move them"
            )
        report.archived_batches += result.batches

    for number, raw in enumerate(_read_rows(path), start=1):
        report.rows += 1
        try:
            event = _schema.load(_coerce(raw))
        except ValidationError as err:
            column, reason = flatten_errors(err.messages)[0]
            report.reject(number, raw.get("id"), column, reason)
            continue
        pair = (event["visitor"], event["id"])
        if pair in seen:
            report.duplicates += 1
            continue
        seen.add(pair)
        if "customer_id" in event:  # the raw CRM id never reaches storage
            event["customer"] = tenant.hash_customer_id(event.pop("customer_id"))
        if erased and erased & set(tenant.erased_marks(event.get("customer"), [event["visitor"]])):
            report.reject(number, raw.get("id"), "visitor", "this person was erased; not imported")
            continue
        event["server_ts"] = now_ms
        ts = event["ts"]
        report.first_ts = ts if report.first_ts is None else min(report.first_ts, ts)
        report.last_ts = ts if report.last_ts is None else max(report.last_ts, ts)
        chunk.append(orjson.dumps(event))
        report.imported += 1
        if len(chunk) >= CHUNK_EVENTS:
            flush()
    flush()
    report.seconds = time.perf_counter() - started
    return report
