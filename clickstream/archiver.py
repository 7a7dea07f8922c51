"""Moves each tenant's event stream into the Parquet archive: nothing lost, nothing twice.

State in Redis, under the tenant's hash tag: ``archive:state`` (hash: ``cursor`` = last archived
stream id, ``batch`` = name of the last committed batch, ``archived`` = running total) and
``archive:lock`` (one archiver per tenant, with expiry, renewed after every batch).

One batch, in this order:

1. read up to ``batch_size`` entries after the cursor (``XRANGE`` with an exclusive start);
2. *stage*: write one Parquet file per UTC date of ``server_ts`` (plus a JSON-lines file for
   entries that cannot become rows) under ``_staging/<batch>/``, each written whole and durably
   through the artifact store (the data dir or an object store: ``archive_files``);
3. *commit*: one Lua call sets ``cursor`` and ``batch``, but only while this archiver still holds
   the lock and the cursor is still the one it read from (compare-and-set). This is the single
   point at which the batch becomes archived;
4. *promote*: move the staged files into their ``date=`` partitions (a rename on a disk, a
   server-side copy then delete on an object store), drop the staging folder;
5. *trim*: ``XTRIM MINID`` just past the cursor.

Recovery, at the start of every run under both locks, makes any crash harmless: a staging dir
named in the commit record is promoted (the commit happened: roll forward), any other staging dir
is deleted (no commit: the entries are still in the stream after the cursor and are read again),
temp files and files made redundant by an interrupted compaction are deleted, and the stream is
trimmed up to the cursor. If Redis lost the commit record (restart from an older snapshot), the
last stream id recorded in the archive's file names is the cursor, so nothing is archived twice.
An archiver whose lock expired while it was stalled cannot commit (compare-and-set fails); it
deletes its staged files and stops.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TypedDict, Unpack, cast

import orjson
import redis

from clickstream.archive_files import (
    QUARANTINE,
    STAGING,
    ArchiveBusy,
    Events,
    StreamId,
    as_store,
    clean_leftovers,
    compact_locked,
    compact_tenant,
    erase_from_archive,
    erase_locked,
    range_name,
    read_archive,
    tenant_lock,
    watermark,
    write_lines,
    write_table,
)
from clickstream.event_table import entries_to_tables
from store import keys
from store.artifacts import ArtifactStore, join_key
from store.persistence import request_rewrite
from store.redis_client import is_cluster, reply_text
from store.tenants import list_tenants, validate_name

__all__ = [
    "ArchiveBusy",
    "ArchiveLockLost",
    "Archiver",
    "TenantResult",
    "compact_tenant",
    "erase_events",
    "erase_from_archive",
    "read_archive",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 20_000
DEFAULT_LOCK_TTL_MS = 60_000
# Writers wait at most this long for readers (training) to finish with the archive.
FS_LOCK_TIMEOUT_S = 120.0

# XRANGE's reply as redis-py parses it. redis-py's own type allows nil ids and fields, which
# only XREADGROUP gives (entries deleted while pending); XRANGE never does.
_Range = list[tuple[bytes | str, dict[bytes | str, bytes | str]]]
# The same reply left raw (Archiver._raw): each entry a pair [id, [field, value, ...]].
_RawRange = list[tuple[bytes | str, list[bytes | str]]]


class ArchiveLockLost(RuntimeError):
    """The archiver's lock expired and another archiver took over; this one stops."""


# Named in store.keys; kept here under the names callers import.
state_key = keys.archive_state
lock_key = keys.archive_lock


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Take the lock when free, or when it holds this archiver's own token: a round that died with
# the store (Redis restarting mid-round) could not release it, and the same archiver would
# otherwise be locked out of the tenant until the lock expired (60 s). Another archiver's
# token still refuses.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if held then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: lock, state. ARGV: token, expected cursor ('' = none), new cursor, batch, events, now, ttl
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = redis.call('HGET', KEYS[2], 'cursor') or ''
if cur ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[2], 'cursor', ARGV[3], 'batch', ARGV[4], 'committed_at', ARGV[6])
redis.call('HINCRBY', KEYS[2], 'archived', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""


@dataclass
class TenantResult:
    """What one archive run did for one tenant (JSON-ready via ``to_dict``)."""

    tenant: str
    events: int = 0  # entries archived (rows + quarantined)
    quarantined: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)  # written, keys in the events store
    cursor: str | None = None
    pending: int = 0  # entries left in the stream after the run
    skipped: str | None = None  # why nothing was done (another archiver holds the lock)
    recovered: dict = field(default_factory=dict)
    compacted: int = 0  # small files merged away

    def to_dict(self) -> dict:
        return asdict(self)


class _Lock:
    """The tenant's archiver lock: a Redis key with expiry holding this archiver's token."""

    def __init__(self, archiver: Archiver, tenant: str) -> None:
        self.r = archiver.r
        self.key = lock_key(tenant)
        self.ttl_ms = archiver.lock_ttl_ms
        self.token = archiver.token
        self._acquire = archiver._acquire
        self._renew = archiver._renew
        self._release = archiver._release

    def acquire(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while not self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def renew(self) -> None:
        if not self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise ArchiveLockLost(f"archiver lock {self.key} expired and was taken over")

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])


class _FlatRange:
    """XRANGE in the raw reply's shape (``_RawRange``) from a Redis Cluster client."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def xrange(self, name: str, min: str, max: str, count: int) -> _RawRange:
        return [
            (
                sid,
                [x for pair in fields.items() for x in pair]
                if isinstance(fields, dict)
                else fields,
            )
            for sid, fields in cast(_Range, self.r.xrange(name, min=min, max=max, count=count))
        ]


class _TenantOptions(TypedDict, total=False):
    """``Archiver.archive_tenant``'s options, as ``archive_all`` passes them on."""

    max_batches: int | None
    lock_wait_s: float
    compact: bool
    progress: Callable[[int], None] | None


class Archiver:
    """Archives tenants' event streams into ``events`` (the events store, or a local events
    folder); see the module doc for the protocol.

    ``hook(step)`` is called after each protocol step ("staged", "committed", "moved",
    "trimmed", "compacted"); the crash-safety tests make it raise or kill the process there.
    """

    def __init__(
        self,
        r: redis.Redis,
        events: Events,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lock_ttl_ms: int = DEFAULT_LOCK_TTL_MS,
        fs_lock_timeout: float = FS_LOCK_TIMEOUT_S,
        hook: Callable[[str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.r = r
        self.store: ArtifactStore = as_store(events)
        self.batch_size = batch_size
        self.lock_ttl_ms = lock_ttl_ms
        self.fs_lock_timeout = fs_lock_timeout
        self.hook = hook or (lambda step: None)
        # One token per archiver (its runs are sequential), so it can take back a lock it
        # could not release; see _ACQUIRE.
        self.token = secrets.token_hex(8)
        self._acquire = r.register_script(_ACQUIRE)
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)
        self._commit_script = r.register_script(_COMMIT)
        # Same pool, but XRANGE replies stay raw lists: redis-py's per-entry dicts cost more than
        # the rest of reading a batch. A cluster client parses on each node's own client, which
        # is shared, so there the dicts are flattened back instead.
        self._raw: redis.Redis | _FlatRange
        if is_cluster(r):
            self._raw = _FlatRange(r)
        else:
            self._raw = redis.Redis(connection_pool=r.connection_pool)
            self._raw.set_response_callback("XRANGE", lambda response, **_: response)

    # -- state -----------------------------------------------------------------------------
    def cursor(self, tenant: str) -> StreamId | None:
        raw = reply_text(self.r.hget(state_key(tenant), "cursor"))
        return StreamId.parse(raw) if raw else None

    def _committed_batch(self, tenant: str) -> str:
        return reply_text(self.r.hget(state_key(tenant), "batch")) or ""

    def pending(self, tenant: str) -> tuple[int, float | None]:
        """(entries waiting after the cursor, age in seconds of the oldest one or None)."""
        cursor = self.cursor(tenant)
        stream = keys.event_stream(tenant)
        head = cast(
            _Range, self.r.xrange(stream, min=f"({cursor}" if cursor else "-", max="+", count=1)
        )
        if not head:
            return 0, None
        first = StreamId.parse(head[0][0])
        # Entries at or below the cursor are trimmed right after each batch, so XLEN is the
        # backlog except within a crash window.
        return int(self.r.xlen(stream)), max(0.0, time.time() - first.ms / 1000)

    def is_due(self, tenant: str, min_events: int, max_delay_s: float) -> bool:
        """Worth archiving now: a full-enough batch waits, or the oldest entry waited long enough.

        Waiting for enough events keeps files few and large; the delay bound keeps the
        archive fresh and the stream short for quiet tenants.
        """
        n, age = self.pending(tenant)
        return n > 0 and (n >= min_events or (age is not None and age >= max_delay_s))

    def _commit(
        self, lock: _Lock, tenant: str, expected: StreamId | None, new: StreamId, batch: str, n: int
    ) -> None:
        ok = self._commit_script(
            keys=[lock.key, state_key(tenant)],
            args=[lock.token, str(expected) if expected else "", str(new), batch, n,
                  repr(time.time()), self.lock_ttl_ms],
        )  # fmt: skip
        if ok != 1:
            raise ArchiveLockLost(
                f"cannot commit archive batch {batch} of {tenant!r}: "
                + ("lock lost" if ok == 0 else "cursor moved under us")
            )

    def _trim(self, tenant: str, cursor: StreamId) -> None:
        self.r.xtrim(keys.event_stream(tenant), minid=str(cursor.next()), approximate=False)

    # -- protocol steps --------------------------------------------------------------------
    def _promote(self, tenant: str, skey: str) -> list[str]:
        """Move a committed batch's staged files into place; idempotent after a crash."""
        moved = []
        for rel in self.store.files(skey):
            dst = join_key(tenant, rel)
            self.store.move(join_key(skey, rel), dst)
            moved.append(dst)
        self.store.delete(skey)
        return moved

    def _recover(self, tenant: str, lock: _Lock) -> dict:
        """Finish or undo what a crashed run left behind; caller holds both locks."""
        out: dict = {}
        batch = self._committed_batch(tenant)
        staging = join_key(tenant, STAGING)
        for name in self.store.list_names(staging):
            if batch and name == batch:
                self._promote(tenant, join_key(staging, name))
                out["rolled_forward"] = out.get("rolled_forward", 0) + 1
            else:
                self.store.delete(join_key(staging, name))
                out["discarded_batches"] = out.get("discarded_batches", 0) + 1
        self.store.clean_staging(staging)
        out.update({k: v for k, v in clean_leftovers(self.store, tenant).items() if v})
        cursor = self.cursor(tenant)
        mark = watermark(self.store, tenant)
        if mark is not None and (cursor is None or mark > cursor):
            log.warning(
                "archive of %s reaches %s but the cursor says %s: restoring it from the files",
                tenant, mark, cursor,
            )  # fmt: skip
            self._commit(lock, tenant, cursor, mark, "", 0)
            out["cursor_restored"] = str(mark)
            cursor = mark
        if cursor is not None:
            self._trim(tenant, cursor)
        return out

    def _fs_lock(self, tenant: str, lock: _Lock):
        return tenant_lock(
            self.store, tenant, exclusive=True, timeout=self.fs_lock_timeout, on_wait=lock.renew
        )

    def _archive_batch(
        self, tenant: str, lock: _Lock, cursor: StreamId | None, end: str
    ) -> tuple[StreamId, int, int, list[str]] | None:
        stream = keys.event_stream(tenant)
        start = f"({cursor}" if cursor else "-"
        entries = cast(
            _RawRange, self._raw.xrange(stream, min=start, max=end, count=self.batch_size)
        )
        if not entries:
            return None
        first, last = StreamId.parse(entries[0][0]), StreamId.parse(entries[-1][0])
        tables, bad = entries_to_tables(entries)
        batch = f"{first}_{last}.{lock.token}"
        with self._fs_lock(tenant, lock):
            skey = join_key(tenant, STAGING, batch)
            for date, table in sorted(tables.items()):
                write_table(
                    self.store, join_key(skey, f"date={date}", range_name(first, last)), table
                )
            if bad:
                qkey = join_key(skey, QUARANTINE, range_name(first, last, "jsonl"))
                write_lines(self.store, qkey, [q.to_json() for q in bad])
                log.warning("%s: %d stream entries quarantined in %s", tenant, len(bad), qkey)
            self.hook("staged")
            try:
                self._commit(lock, tenant, cursor, last, batch, len(entries))
            except ArchiveLockLost:
                self.store.delete(skey)
                raise
            self.hook("committed")
            moved = self._promote(tenant, skey)
            self.hook("moved")
        self._trim(tenant, last)
        self.hook("trimmed")
        return last, len(entries), len(bad), moved

    # -- runs ------------------------------------------------------------------------------
    def archive_tenant(
        self,
        tenant: str,
        max_batches: int | None = None,
        lock_wait_s: float = 0.0,
        compact: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> TenantResult:
        """Archive what the tenant's stream holds now (entries added meanwhile wait for next run).

        Returns with ``skipped="locked"`` when another archiver holds the tenant's lock for
        longer than ``lock_wait_s``.
        """
        validate_name(tenant)
        result = TenantResult(tenant)
        lock = _Lock(self, tenant)
        if not lock.acquire(lock_wait_s):
            result.skipped = "locked"
            return result
        touched: set[str] = set()
        try:
            with self._fs_lock(tenant, lock):
                result.recovered = self._recover(tenant, lock)
            last_entry = self.r.xrevrange(keys.event_stream(tenant), count=1)
            end = reply_text(last_entry[0][0]) if last_entry else None
            cursor = self.cursor(tenant)
            while end and (max_batches is None or result.batches < max_batches):
                done = self._archive_batch(tenant, lock, cursor, end)
                if done is None:
                    break
                cursor, n, n_bad, moved = done
                result.batches += 1
                result.events += n
                result.quarantined += n_bad
                for key in moved:
                    result.files.append(key)
                    folder = key.split("/")[-2]
                    if folder.startswith("date="):
                        touched.add(folder[5:])
                if progress:
                    progress(n)
                lock.renew()
            if compact:
                yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
                with self._fs_lock(tenant, lock):
                    result.compacted = compact_locked(
                        self.store, tenant, touched | {yesterday}, hook=self.hook
                    )
            result.cursor = str(cursor) if cursor else None
            result.pending = int(self.r.xlen(keys.event_stream(tenant)))
        finally:
            lock.release()
        if result.events or result.recovered:
            log.info("archived %s", orjson.dumps(result.to_dict()).decode())
        return result

    def archive_all(
        self, tenants: Iterable[str] | None = None, **kwargs: Unpack[_TenantOptions]
    ) -> dict[str, TenantResult]:
        """``archive_tenant`` for each given (default: every registered) tenant."""
        names = list(tenants) if tenants is not None else [t.name for t in list_tenants(self.r)]
        return {name: self.archive_tenant(name, **kwargs) for name in names}


def _scan_stream(r: redis.Redis, stream: str, chunk: int = 10_000):
    """(entry id, visitor, customer) of every parsable entry, read in chunks."""
    start = "-"
    while True:
        entries = cast(_Range, r.xrange(stream, min=start, max="+", count=chunk))
        for sid, fields_ in entries:
            payload = fields_.get(b"e", fields_.get("e"))
            if payload is None:  # not an event entry: nothing to erase by
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                e = orjson.loads(payload)
                if isinstance(e, dict):
                    yield sid, e.get("visitor"), e.get("customer")
        if len(entries) < chunk:
            return
        start = f"({reply_text(entries[-1][0])}"


# XDEL only flags an entry: its bytes stay in the stream's listpack until the whole node goes.
# Erasure must remove them, so the surviving entries are copied (same ids) into a fresh stream
# that replaces the old one, keeping the last generated id so new ids stay monotonic. The stream
# holds at most what the archiver has not yet moved, so the script's pause is short.
_PURGE = """
local last = redis.call('XINFO', 'STREAM', KEYS[1])
local last_id
for i = 1, #last, 2 do if last[i] == 'last-generated-id' then last_id = last[i + 1] end end
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
if #entries == 0 then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
  return 0
end
redis.call('DEL', KEYS[2])
for _, e in ipairs(entries) do redis.call('XADD', KEYS[2], e[1], unpack(e[2])) end
redis.call('XSETID', KEYS[2], last_id)
redis.call('RENAME', KEYS[2], KEYS[1])
return #entries
"""


def _purge_deleted(r: redis.Redis, stream: str) -> None:
    r.eval(_PURGE, 2, stream, stream + ":purge")
    # The append-only file still holds the original XADDs: rewrite it (best effort; a managed
    # Redis may refuse, and then its own rewrite schedule applies).
    request_rewrite(r)


def erase_events(
    r: redis.Redis,
    events: Events,
    tenant: str,
    visitor_ids: Iterable[str] = (),
    customer_ids: Iterable[str] = (),
    linked_visitors: bool = True,
    lock_wait_s: float = 60.0,
) -> dict:
    """Erase a visitor's or (hashed) customer's events from the archive *and* the live stream.

    Holds the tenant's archiver lock so that no batch is between stream and files meanwhile.
    Returns ``{"archive_rows": n, "stream_entries": m}``.
    """
    visitors = {str(v) for v in visitor_ids}
    customers = {str(c) for c in customer_ids}
    archiver = Archiver(r, events)
    lock = _Lock(archiver, tenant)
    if not lock.acquire(lock_wait_s):
        raise ArchiveBusy(f"the archiver of {tenant!r} is busy; retry the erasure later")
    try:
        stream = keys.event_stream(tenant)
        parsed = list(_scan_stream(r, stream)) if (visitors or customers) else []
        if linked_visitors:
            visitors.update(v for _, v, c in parsed if c in customers and isinstance(v, str))
        rows = 0
        if archiver.store.exists(tenant) and (visitors or customers):
            with archiver._fs_lock(tenant, lock):
                archiver._recover(tenant, lock)
                rows = erase_locked(archiver.store, tenant, visitors, customers, linked_visitors)
        doomed = [
            sid for sid, v, c in parsed if v in visitors or (c is not None and c in customers)
        ]
        for i in range(0, len(doomed), 1000):
            r.xdel(stream, *doomed[i : i + 1000])
        if doomed:
            _purge_deleted(r, stream)
        return {"archive_rows": rows, "stream_entries": len(doomed)}
    finally:
        lock.release()
