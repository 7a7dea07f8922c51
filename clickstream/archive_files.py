"""The on-disk event archive: layout, crash-safe writes, locking, reading, erasure, compaction.

Layout of one tenant's archive (``<events dir>/<tenant>/``)::

    date=YYYY-MM-DD/<first>_<last>.parquet   committed events; first/last are Redis stream ids
    _quarantine/<first>_<last>.jsonl         entries of that batch that could not become rows
    _staging/<batch>/...                     a batch being written; never read, see archiver.py
    .lock                                    flock: shared by readers, exclusive for writers
    .<name>.<random>.tmp                     a file being written, renamed into place when whole

Every file appears under its final name only complete and fsynced (temp file, fsync, atomic
rename, fsync of the directory: ``store.artifacts.durable``, the one durability level of all
Offerwise files), so a crash leaves at worst a temp file, which is garbage.
File names carry the stream-id range of their rows. Ranges of files in one partition never
overlap, except for the moment after compaction renamed a merged file into place and before it
removed the files it merged: a file whose range lies inside another file's range is therefore
redundant, and both readers and recovery ignore or delete it. That rule makes compaction crash
safe without any other bookkeeping.

The flock serialises writers (archiver batches, compaction, erasure) against each other and against
readers on one host or a shared POSIX file system. An object-store deployment would replace it with
the store's conditional writes; the naming rules stay the same.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
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
from store.artifacts import atomic_write, fsync_dir, fsync_file
from store.tenants import validate_name

STAGING = "_staging"
QUARANTINE = "_quarantine"
LOCK_FILE = ".lock"
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
    path: Path
    date: str  # partition date, "" for quarantine files
    first: StreamId
    last: StreamId

    def covers(self, other: ArchiveFile) -> bool:
        return self.first <= other.first and other.last <= self.last and self.path != other.path


def range_name(first: StreamId, last: StreamId, suffix: str = "parquet") -> str:
    return f"{first}_{last}.{suffix}"


def parse_name(path: Path, date: str = "") -> ArchiveFile | None:
    m = _FILE_RE.match(path.name)
    if not m:
        return None
    a, b, c, d = (int(g) for g in m.groups()[:4])
    return ArchiveFile(path, date, StreamId(a, b), StreamId(c, d))


def tenant_dir(events_dir: Path | str, tenant: str) -> Path:
    """The tenant's archive folder; the name is validated so it can never escape the events dir."""
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
def write_parquet(table: pa.Table, path: Path) -> None:
    """Write and fsync (not atomic by itself: callers write to a temp or staging name)."""
    pq.write_table(table, path, compression=PARQUET_COMPRESSION)
    fsync_file(path)


def atomic_write_table(table: pa.Table, final: Path) -> None:
    atomic_write(final, lambda p: pq.write_table(table, p, compression=PARQUET_COMPRESSION))


def atomic_write_lines(lines: Iterable[bytes], final: Path) -> None:
    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            for line in lines:
                fh.write(line + b"\n")

    atomic_write(final, write)


# -- locking ---------------------------------------------------------------------------------
@contextlib.contextmanager
def tenant_lock(
    tdir: Path,
    exclusive: bool,
    timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """flock on the tenant's lock file; ``on_wait`` runs about every second while waiting.

    Raises ArchiveBusy after ``timeout`` seconds (None waits forever).
    """
    tdir.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with open(tdir / LOCK_FILE, "a+b") as fh:
        deadline = None if timeout is None else time.monotonic() + timeout
        next_ping = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(fh, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise ArchiveBusy(
                        f"archive of {tdir.name!r} is locked by another writer"
                    ) from None
                if on_wait is not None and now >= next_ping:
                    on_wait()
                    next_ping = now + 1.0
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- listing ---------------------------------------------------------------------------------
def partitions(
    tdir: Path, start: str | None = None, end: str | None = None
) -> list[tuple[str, Path]]:
    if not tdir.is_dir():
        return []
    found = []
    for p in tdir.iterdir():
        m = _PARTITION_RE.match(p.name)
        if m and p.is_dir() and (start is None or m[1] >= start) and (end is None or m[1] <= end):
            found.append((m[1], p))
    return sorted(found)


def list_files(tdir: Path, start: str | None = None, end: str | None = None) -> list[ArchiveFile]:
    """Committed Parquet files (including redundant ones), by date then stream id."""
    files = []
    for date, pdir in partitions(tdir, start, end):
        for p in pdir.iterdir():
            f = parse_name(p, date)
            if f is not None and p.suffix == ".parquet":
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


def quarantine_files(tdir: Path) -> list[Path]:
    qdir = tdir / QUARANTINE
    return (
        sorted(p for p in qdir.glob("*.jsonl") if not p.name.startswith("."))
        if qdir.is_dir()
        else []
    )


def watermark(tdir: Path) -> StreamId | None:
    """The last stream id present in any committed file (Parquet or quarantine)."""
    marks = [f.last for f in list_files(tdir)]
    marks += [f.last for f in (parse_name(p) for p in quarantine_files(tdir)) if f is not None]
    return max(marks, default=None)


def clean_leftovers(tdir: Path) -> dict[str, int]:
    """Delete temp files and redundant (covered) files; caller holds the exclusive lock."""
    temps = 0
    dirs = [p for _, p in partitions(tdir)] + [tdir / QUARANTINE]
    for d in dirs:
        if not d.is_dir():
            continue
        for p in d.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            temps += 1
    _, covered = split_covered(list_files(tdir))
    for f in covered:
        f.path.unlink(missing_ok=True)
    for d in {f.path.parent for f in covered} | (
        {d for d in dirs if d.is_dir()} if temps else set()
    ):
        fsync_dir(d)
    return {"temp_files": temps, "redundant_files": len(covered)}


# -- reading ---------------------------------------------------------------------------------
def _read_file(path: Path, columns: Sequence[str]) -> pa.Table:
    pf = pq.ParquetFile(path)
    present = [c for c in columns if c in pf.schema_arrow.names]
    return conform(pf.read(columns=present), columns)


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
    events_dir: Path | str,
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
    tdir = tenant_dir(events_dir, tenant)
    tables = []
    if tdir.is_dir():
        with tenant_lock(tdir, exclusive=False):
            live, _ = split_covered(list_files(tdir, start, end))
            tables = [_read_file(f.path, read_cols) for f in live]
    if not tables:
        return conform(SCHEMA.empty_table(), wanted)
    table = pa.concat_tables(tables)
    if dedupe:
        table = dedupe_events(table).select(wanted)
    return table


# -- erasure ---------------------------------------------------------------------------------
def _erase_mask(table: pa.Table, visitors: pa.Array, customers: pa.Array) -> pa.Array:
    mask = pc.is_in(table["visitor"], value_set=visitors)
    if "customer" in table.column_names and len(customers):
        mask = pc.or_(mask, pc.fill_null(pc.is_in(table["customer"], value_set=customers), False))
    return pc.fill_null(mask, False)


def erase_from_archive(
    events_dir: Path | str,
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
    tdir = tenant_dir(events_dir, tenant)
    if not (visitors or customers) or not tdir.is_dir():
        return 0
    with tenant_lock(tdir, exclusive=True):
        return erase_locked(tdir, visitors, customers, linked_visitors)


def erase_locked(tdir: Path, visitors: set[str], customers: set[str], linked_visitors: bool) -> int:
    """``erase_from_archive`` for a caller that already holds the exclusive tenant lock."""
    clean_leftovers(tdir)
    staged = sorted((tdir / STAGING).rglob("*")) if (tdir / STAGING).is_dir() else []
    parquet = [f.path for f in list_files(tdir)] + [
        p for p in staged if p.suffix == ".parquet" and not p.name.startswith(".")
    ]
    jsonl = quarantine_files(tdir) + [
        p for p in staged if p.suffix == ".jsonl" and not p.name.startswith(".")
    ]
    customer_set = pa.array(sorted(customers), type=pa.string())
    if customers and linked_visitors:
        for path in parquet:
            keys = _read_file(path, ["visitor", "customer"])
            hit = pc.fill_null(pc.is_in(keys["customer"], value_set=customer_set), False)
            visitors.update(v for v in pc.filter(keys["visitor"], hit).to_pylist() if v)
    visitor_set = pa.array(sorted(visitors), type=pa.string())
    removed = 0
    for path in parquet:
        mask = _erase_mask(_read_file(path, ["visitor", "customer"]), visitor_set, customer_set)
        n = pc.sum(mask).as_py() or 0
        if n:
            table = pq.read_table(path)
            atomic_write_table(table.filter(pc.invert(mask)), path)
            removed += n
    needles = [orjson.dumps(x).decode() for x in visitors | customers]
    for path in jsonl:
        lines = path.read_bytes().splitlines()
        keep = [
            ln for ln in lines if not any(s in orjson.loads(ln).get("payload", "") for s in needles)
        ]
        if len(keep) != len(lines):
            atomic_write_lines(keep, path)
            removed += len(lines) - len(keep)
    return removed


# -- compaction ------------------------------------------------------------------------------
def compact_locked(
    tdir: Path,
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
    for date, pdir in partitions(tdir):
        if wanted is not None and date not in wanted:
            continue
        live, _ = split_covered([f for f in list_files(tdir, date, date)])
        need = 2 if date < today else max(2, min_files)
        runs: list[list[tuple[ArchiveFile, int]]] = [[]]
        for f in live:
            size = f.path.stat().st_size
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
            table = pa.concat_tables([conform(pq.read_table(f.path)) for f in files])
            atomic_write_table(table, pdir / range_name(files[0].first, files[-1].last))
            if hook:
                hook("compacted")
            for f in files:
                f.path.unlink(missing_ok=True)
            fsync_dir(pdir)
            merged_away += len(files)
    return merged_away


def compact_tenant(
    events_dir: Path | str,
    tenant: str,
    dates: Iterable[str] | None = None,
    target_bytes: int = COMPACT_TARGET_BYTES,
    min_files: int = COMPACT_MIN_FILES,
) -> int:
    """Merge small archive files of a tenant (all dates, or the given ``YYYY-MM-DD`` dates)."""
    tdir = tenant_dir(events_dir, tenant)
    if not tdir.is_dir():
        return 0
    with tenant_lock(tdir, exclusive=True):
        return compact_locked(tdir, dates, target_bytes=target_bytes, min_files=min_files)
