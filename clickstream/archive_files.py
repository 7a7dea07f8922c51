"""The event archive: layout, crash-safe writes, locking, reading, erasure, compaction.

The archive lives in the artifact store's ``events`` folder (``store.artifacts.events_store``:
the data dir, or an object store). Layout of one tenant's archive (keys under ``<tenant>/``)::

    date=YYYY-MM-DD/<first>_<last>.parquet   committed events; first/last are Redis stream ids
    _quarantine/<first>_<last>.jsonl         entries of that batch that could not become rows
    _staging/<batch>/...                     a batch being written; never read, see archiver.py
    .lock                                    local store only: flock, shared by readers,
                                             exclusive for writers
    .<name>.<random>.tmp                     local store only: a file being written

Every file appears under its final key only complete (``ArtifactStore.write_file``: temp file,
fsync, atomic rename and fsync of the directory on a local disk; one PUT on an object store), so
a crash leaves at worst a temp file, which is garbage.
File names carry the stream-id range of their rows. Ranges of files in one partition never
overlap, except for the moment after compaction wrote a merged file and before it removed the
files it merged: a file whose range lies inside another file's range is therefore redundant, and
both readers and recovery ignore or delete it. That rule makes compaction crash safe without any
other bookkeeping.

Locking. On a local (or shared POSIX) file system the store's flock serialises writers (archiver
batches, compaction, erasure) against each other and against readers. An object store has no
flock: there every writer holds the tenant's archiver lock in Redis (``archiver.Archiver`` and
``archiver.erase_events`` take it; ``compact_tenant`` and ``erase_from_archive`` must only be
called under it), and a reader that lists a file which compaction then merged away re-lists and
reads again (``read_archive``): the merged file holds the same rows, so the result is the same.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickstream.event_table import SCHEMA, conform
from store.artifacts import ArtifactNotFound, ArtifactStore, LocalArtifacts, join_key
from store.tenants import validate_name

STAGING = "_staging"
QUARANTINE = "_quarantine"
# Where callers name the archive: its store, or (tests, tools) a local events folder.
Events = ArtifactStore | Path | str
# A listed file vanished before it was read (compaction merged it) this many times in a row.
READ_RETRIES = 5
PARQUET_COMPRESSION = "zstd"
_FILE_RE = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)\.(parquet|jsonl)$")
_PARTITION_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")

# Compaction: files below half the target are "small"; runs of small files are merged into
# files of at most the target size. An open day waits for this many small files; a closed day
# (before today, UTC) is merged as soon as it has two.
COMPACT_TARGET_BYTES = 64 * 1024 * 1024
COMPACT_MIN_FILES = 16


class ArchiveBusy(RuntimeError):
    """The tenant's archive is locked by another writer for longer than the caller would wait."""


@dataclass(frozen=True, order=True)
class StreamId:
    """A Redis stream id ``<ms>-<seq>``, ordered like Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str | bytes) -> StreamId:
        if isinstance(text, bytes):
            text = text.decode()
        ms, sep, seq = text.partition("-")
        if not (ms.isdigit() and sep and seq.isdigit()):
            raise ValueError(f"not a stream id: {text!r}")
        return cls(int(ms), int(seq))

    def next(self) -> StreamId:
        return StreamId(self.ms, self.seq + 1)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


@dataclass(frozen=True)
class ArchiveFile:
    key: str  # relative to the events store: <tenant>/date=.../<name>
    date: str  # partition date, "" for quarantine files
    first: StreamId
    last: StreamId

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def covers(self, other: ArchiveFile) -> bool:
        return self.first <= other.first and other.last <= self.last and self.key != other.key


def range_name(first: StreamId, last: StreamId, suffix: str = "parquet") -> str:
    return f"{first}_{last}.{suffix}"


def parse_name(key: str, date: str = "") -> ArchiveFile | None:
    m = _FILE_RE.match(key.rsplit("/", 1)[-1])
    if not m:
        return None
    a, b, c, d = (int(g) for g in m.groups()[:4])
    return ArchiveFile(key, date, StreamId(a, b), StreamId(c, d))


def as_store(events: Events) -> ArtifactStore:
    """The archive's store: given, or a local events folder made one."""
    return events if isinstance(events, ArtifactStore) else LocalArtifacts(Path(events))


def tenant_dir(events_dir: Path | str, tenant: str) -> Path:
    """A local archive's tenant folder; the name is validated so it can never escape."""
    return Path(events_dir) / validate_name(tenant)


def _as_date(value: dt.date | str | None, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}") from None


# -- durable writes --------------------------------------------------------------------------
def write_table(store: ArtifactStore, key: str, table: pa.Table) -> None:
    store.write_file(key, lambda p: pq.write_table(table, p, compression=PARQUET_COMPRESSION))


def write_lines(store: ArtifactStore, key: str, lines: Iterable[bytes]) -> None:
    store.write_bytes(key, b"".join(line + b"\n" for line in lines))


# -- locking ---------------------------------------------------------------------------------
@contextlib.contextmanager
def tenant_lock(
    store: ArtifactStore,
    tenant: str,
    exclusive: bool,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """The store's lock on the tenant's folder (see the module docstring); ``on_wait`` runs
    about every second while waiting. Raises ArchiveBusy after ``timeout`` seconds."""
    try:
        with store.lock(validate_name(tenant), exclusive, timeout, on_wait):
            yield
    except TimeoutError:
        raise ArchiveBusy(f"archive of {tenant!r} is locked by another writer") from None


# -- listing ---------------------------------------------------------------------------------
def partitions(
    store: ArtifactStore, tenant: str, start: str | None = None, end: str | None = None
) -> list[tuple[str, str]]:
    """(date, key) of the tenant's date partitions between two dates."""
    found = []
    for name in store.versions(validate_name(tenant)):
        m = _PARTITION_RE.match(name)
        if m and (start is None or m[1] >= start) and (end is None or m[1] <= end):
            found.append((m[1], join_key(tenant, name)))
    return sorted(found)


def list_files(
    store: ArtifactStore, tenant: str, start: str | None = None, end: str | None = None
) -> list[ArchiveFile]:
    """Committed Parquet files (including redundant ones), by date then stream id. One listing
    of the tenant's folder (on an object store, one paged LIST rather than one per day)."""
    files = []
    for rel in store.files(validate_name(tenant)):
        folder, _, name = rel.rpartition("/")
        m = _PARTITION_RE.match(folder)
        if not m or not name.endswith(".parquet"):
            continue
        if (start is None or m[1] >= start) and (end is None or m[1] <= end):
            f = parse_name(join_key(tenant, rel), m[1])
            if f is not None:
                files.append(f)
    return sorted(files, key=lambda f: (f.date, f.first, f.last))


def split_covered(files: Sequence[ArchiveFile]) -> tuple[list[ArchiveFile], list[ArchiveFile]]:
    """(live, redundant): a file inside another file's range of the same date is redundant."""
    live: list[ArchiveFile] = []
    covered: list[ArchiveFile] = []
    by_date: dict[str, list[ArchiveFile]] = {}
    for f in files:
        by_date.setdefault(f.date, []).append(f)
    for group in by_date.values():
        # Widest first, so that a merged file is seen before the files it merged.
        group = sorted(group, key=lambda f: (f.first, -f.last.ms, -f.last.seq))
        kept: list[ArchiveFile] = []
        for f in group:
            if kept and kept[-1].covers(f):
                covered.append(f)
            else:
                kept.append(f)
        live.extend(kept)
    return sorted(live, key=lambda f: (f.date, f.first)), covered


def quarantine_files(store: ArtifactStore, tenant: str) -> list[str]:
    """Keys of the tenant's quarantine files."""
    qkey = join_key(validate_name(tenant), QUARANTINE)
    return [join_key(qkey, n) for n in store.list_names(qkey) if n.endswith(".jsonl")]


def watermark(store: ArtifactStore, tenant: str) -> StreamId | None:
    """The last stream id present in any committed file (Parquet or quarantine)."""
    marks = [f.last for f in list_files(store, tenant)]
    marks += [
        f.last for f in (parse_name(k) for k in quarantine_files(store, tenant)) if f is not None
    ]
    return max(marks, default=None)


def clean_leftovers(store: ArtifactStore, tenant: str) -> dict[str, int]:
    """Delete temp files and redundant (covered) files; caller holds the exclusive lock."""
    temps = 0
    for key in [k for _, k in partitions(store, tenant)] + [join_key(tenant, QUARANTINE)]:
        temps += len(store.clean_staging(key))
    _, covered = split_covered(list_files(store, tenant))
    for f in covered:
        store.delete(f.key)
    return {"temp_files": temps, "redundant_files": len(covered)}


# -- reading ---------------------------------------------------------------------------------
def _read_file(store: ArtifactStore, key: str, columns: Sequence[str]) -> pa.Table:
    with store.open(key) as fh:
        pf = pq.ParquetFile(fh)
        present = [c for c in columns if c in pf.schema_arrow.names]
        return conform(pf.read(columns=present), columns)


def _read_whole(store: ArtifactStore, key: str) -> pa.Table:
    with store.open(key) as fh:
        return pq.read_table(fh)


def dedupe_events(table: pa.Table) -> pa.Table:
    """Keep the first row of each (visitor, id): a client retry archived twice counts once."""
    n = table.num_rows
    if n == 0:
        return table
    keys = pa.table(
        {"visitor": table["visitor"], "id": table["id"], "__row": pa.array(np.arange(n))}
    )
    firsts = keys.group_by(["visitor", "id"], use_threads=False).aggregate([("__row", "min")])
    if firsts.num_rows == n:
        return table
    return table.take(pa.array(np.sort(firsts["__row_min"].to_numpy())))


def read_archive(
    events: Events,
    tenant: str,
    start_date: dt.date | str | None = None,
    end_date: dt.date | str | None = None,
    columns: Sequence[str] | None = None,
    dedupe: bool = True,
) -> pa.Table:
    """A tenant's archived events between two UTC dates (inclusive), deduplicated by (visitor, id).

    Rows come in archive order (date, then arrival). ``columns`` selects a subset of
    ``event_table.SCHEMA``; the table always has the current schema's types, also for files
    written by older versions.
    """
    start, end = _as_date(start_date, "start_date"), _as_date(end_date, "end_date")
    wanted = list(columns) if columns else list(SCHEMA.names)
    unknown = [c for c in wanted if c not in SCHEMA.names]
    if unknown:
        raise ValueError(f"unknown archive column(s) {unknown}; known: {SCHEMA.names}")
    read_cols = wanted + [c for c in ("visitor", "id") if dedupe and c not in wanted]
    store = as_store(events)
    validate_name(tenant)
    tables = []
    if store.exists(tenant):
        with tenant_lock(store, tenant, exclusive=False):
            tables = _read_live(store, tenant, start, end, read_cols)
    if not tables:
        return conform(SCHEMA.empty_table(), wanted)
    table = pa.concat_tables(tables)
    if dedupe:
        table = dedupe_events(table).select(wanted)
    return table


def _read_live(
    store: ArtifactStore, tenant: str, start: str | None, end: str | None, columns: list[str]
) -> list[pa.Table]:
    """The live files' rows. Without a lock (object store) a file listed can be merged away
    before it is read: then list again; the merged file holds the same rows."""
    for attempt in range(READ_RETRIES):
        live, _ = split_covered(list_files(store, tenant, start, end))
        try:
            return [_read_file(store, f.key, columns) for f in live]
        except (ArtifactNotFound, FileNotFoundError):
            if attempt == READ_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return []


def live_file_keys(
    events: Events,
    tenant: str,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
) -> list[str]:
    """Keys (relative to the events store) of the tenant's live archive files between two UTC
    dates: what a partitioned reader (Dask) reads; redundant files are left out."""
    store = as_store(events)
    live, _ = split_covered(
        list_files(store, validate_name(tenant), _as_date(start, "start"), _as_date(end, "end"))
    )
    return [f.key for f in live]


# -- erasure ---------------------------------------------------------------------------------
def _erase_mask(table: pa.Table, visitors: pa.Array, customers: pa.Array) -> pa.Array:
    mask = pc.is_in(table["visitor"], value_set=visitors)
    if "customer" in table.column_names and len(customers):
        mask = pc.or_(mask, pc.fill_null(pc.is_in(table["customer"], value_set=customers), False))
    return pc.fill_null(mask, False)


def erase_from_archive(
    events: Events,
    tenant: str,
    visitor_ids: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
    linked_visitors: bool = True,
) -> int:
    """Remove every archived event of these visitors or (hashed) customers; returns rows removed.

    With ``linked_visitors`` a visitor seen with one of the customers is erased entirely, also
    the anonymous events before the login. Affected files are rewritten atomically (a file that
    becomes empty stays, empty, because its name records how far the archive reached).
    Batches staged but not yet moved into place and quarantined entries are cleaned as well, so
    a later archiver step cannot bring the rows back. Events still in the Redis stream are not
    touched here: see ``archiver.erase_events`` for the complete erasure.
    """
    visitors = {str(v) for v in visitor_ids}
    customers = {str(c) for c in customer_ids}
    store = as_store(events)
    validate_name(tenant)
    if not (visitors or customers) or not store.exists(tenant):
        return 0
    with tenant_lock(store, tenant, exclusive=True):
        return erase_locked(store, tenant, visitors, customers, linked_visitors)


def erase_locked(
    store: ArtifactStore,
    tenant: str,
    visitors: set[str],
    customers: set[str],
    linked_visitors: bool,
) -> int:
    """``erase_from_archive`` for a caller that already holds the exclusive tenant lock."""
    clean_leftovers(store, tenant)
    skey = join_key(tenant, STAGING)
    staged = [join_key(skey, k) for k in store.files(skey)]
    parquet = [f.key for f in list_files(store, tenant)] + [
        k for k in staged if k.endswith(".parquet")
    ]
    jsonl = quarantine_files(store, tenant) + [k for k in staged if k.endswith(".jsonl")]
    customer_set = pa.array(sorted(customers), type=pa.string())
    if customers and linked_visitors:
        for key in parquet:
            keys = _read_file(store, key, ["visitor", "customer"])
            hit = pc.fill_null(pc.is_in(keys["customer"], value_set=customer_set), False)
            visitors.update(v for v in pc.filter(keys["visitor"], hit).to_pylist() if v)
    visitor_set = pa.array(sorted(visitors), type=pa.string())
    removed = 0
    for key in parquet:
        mask = _erase_mask(
            _read_file(store, key, ["visitor", "customer"]), visitor_set, customer_set
        )
        n = pc.sum(mask).as_py() or 0
        if n:
            write_table(store, key, _read_whole(store, key).filter(pc.invert(mask)))
            removed += n
    needles = [orjson.dumps(x).decode() for x in visitors | customers]
    for key in jsonl:
        lines = store.read_bytes(key).splitlines()
        keep = [
            ln for ln in lines if not any(s in orjson.loads(ln).get("payload", "") for s in needles)
        ]
        if len(keep) != len(lines):
            write_lines(store, key, keep)
            removed += len(lines) - len(keep)
    return removed


# -- compaction ------------------------------------------------------------------------------
def compact_locked(
    store: ArtifactStore,
    tenant: str,
    dates: Iterable[str] | None = None,
    today: str | None = None,
    target_bytes: int = COMPACT_TARGET_BYTES,
    min_files: int = COMPACT_MIN_FILES,
    hook: Callable[[str], None] | None = None,
) -> int:
    """Merge runs of small files per partition; returns how many files were merged away.

    Caller holds the exclusive tenant lock. Only consecutive files (in stream order) are merged,
    so a merged file's range covers exactly the files it replaces.
    """
    today = today or dt.datetime.now(dt.UTC).date().isoformat()
    wanted = None if dates is None else set(dates)
    merged_away = 0
    for date, pkey in partitions(store, tenant):
        if wanted is not None and date not in wanted:
            continue
        live, _ = split_covered(list_files(store, tenant, date, date))
        need = 2 if date < today else max(2, min_files)
        runs: list[list[tuple[ArchiveFile, int]]] = [[]]
        for f in live:
            size = store.size(f.key)
            run = runs[-1]
            if size >= target_bytes // 2:
                runs.append([])
            elif run and sum(s for _, s in run) + size > target_bytes:
                runs.append([(f, size)])
            else:
                run.append((f, size))
        for run in runs:
            if len(run) < need:
                continue
            files = [f for f, _ in run]
            table = pa.concat_tables([conform(_read_whole(store, f.key)) for f in files])
            write_table(store, join_key(pkey, range_name(files[0].first, files[-1].last)), table)
            if hook:
                hook("compacted")
            for f in files:
                store.delete(f.key)
            merged_away += len(files)
    return merged_away


def compact_tenant(
    events: Events,
    tenant: str,
    dates: Iterable[str] | None = None,
    target_bytes: int = COMPACT_TARGET_BYTES,
    min_files: int = COMPACT_MIN_FILES,
) -> int:
    """Merge small archive files of a tenant (all dates, or the given ``YYYY-MM-DD`` dates)."""
    store = as_store(events)
    if not store.exists(validate_name(tenant)):
        return 0
    with tenant_lock(store, tenant, exclusive=True):
        return compact_locked(store, tenant, dates, target_bytes=target_bytes, min_files=min_files)
