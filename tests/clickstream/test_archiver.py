"""Event archiver: stream -> Parquet exactly once, across crashes, concurrency and erasure.

Events are written with XADD in the ingest contract's format (one field ``e`` holding the JSON
event), against the session's real Redis server; "crashes" are made either by a hook raising
at a protocol step (in process) or by ``os._exit`` in a child process (a real crash: no cleanup
code runs, the lock stays held until it expires).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream.archive_files import (
    STAGING,
    StreamId,
    compact_tenant,
    list_files,
    quarantine_files,
    split_covered,
    tenant_dir,
)
from clickstream.archiver import (
    ArchiveLockLost,
    Archiver,
    erase_events,
    erase_from_archive,
    lock_key,
    read_archive,
    state_key,
)
from clickstream.event_table import SCHEMA, row_to_event
from store import keys
from store.artifacts import LocalArtifacts
from store.tenants import TenantError, create_tenant
from tests.helpers import another_client

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
T = "demo"
STREAM = keys.event_stream(T)
KNOWN = set(SCHEMA.names)


class Crash(BaseException):
    """Raised by a hook to stop the archiver mid-protocol without running its error handling."""


def now_ms() -> int:
    return int(time.time() * 1000)


def make_event(i: int, server_ts: int | None = None, **extra: object) -> dict:
    ts = now_ms() if server_ts is None else server_ts
    return {"id": f"e{i}", "type": "product_view", "ts": ts - 5, "server_ts": ts,
            "visitor": f"v{i % 7}", "product_id": f"p{i % 11}", **extra}  # fmt: skip


def add(r: redis.Redis, events: list[dict], tenant: str = T) -> list[str]:
    pipe = r.pipeline(transaction=False)
    for e in events:
        pipe.xadd(keys.event_stream(tenant), {"e": orjson.dumps(e)})
    return [i.decode() for i in pipe.execute()]


def add_raw(r: redis.Redis, payload: bytes, tenant: str = T) -> str:
    return r.xadd(keys.event_stream(tenant), {"e": payload}).decode()


def archive_files(events_dir: Path, tenant: str = T) -> list:
    return list_files(LocalArtifacts(events_dir), tenant)


def quarantine_paths(events_dir: Path, tenant: str = T) -> list[Path]:
    return [events_dir / k for k in quarantine_files(LocalArtifacts(events_dir), tenant)]


def physical_rows(events_dir: Path, tenant: str = T) -> collections.Counter:
    """Stream ids over every Parquet file on disk (no dedupe, no redundancy rule)."""
    found: collections.Counter = collections.Counter()
    for p in tenant_dir(events_dir, tenant).rglob("*.parquet"):
        if STAGING not in p.parts and not p.name.startswith("."):
            found.update(pq.read_table(p, columns=["stream_id"])["stream_id"].to_pylist())
    return found


def quarantined_ids(events_dir: Path, tenant: str = T) -> collections.Counter:
    found: collections.Counter = collections.Counter()
    for p in quarantine_paths(events_dir, tenant):
        found.update(orjson.loads(line)["stream_id"] for line in p.read_bytes().splitlines())
    return found


def assert_exactly_once(r: redis.Redis, events_dir: Path, ids: list[str], tenant: str = T) -> None:
    """Every added entry is archived once (rows or quarantine), the stream is empty, no debris."""
    archived = physical_rows(events_dir, tenant) + quarantined_ids(events_dir, tenant)
    dupes = {k: v for k, v in archived.items() if v > 1}
    assert not dupes, f"archived more than once: {dupes}"
    assert set(archived) == set(ids), (
        f"lost {sorted(set(ids) - set(archived))[:5]}, extra {sorted(set(archived) - set(ids))[:5]}"
    )
    assert r.xlen(keys.event_stream(tenant)) == 0
    tdir = tenant_dir(events_dir, tenant)
    assert not any((tdir / STAGING).iterdir()) if (tdir / STAGING).exists() else True
    assert not list(tdir.rglob("*.tmp"))
    _, covered = split_covered(archive_files(events_dir, tenant))
    assert not covered
    read = read_archive(events_dir, tenant, dedupe=False)["stream_id"].to_pylist()
    assert sorted(read) == sorted(physical_rows(events_dir, tenant).elements())


@pytest.fixture
def events_dir(tmp_path: Path) -> Path:
    return tmp_path / "events"


# -- round trip and layout ---------------------------------------------------------------------
def test_round_trip_rows_equal_and_stream_trimmed(r: redis.Redis, events_dir: Path) -> None:
    events = [
        make_event(i, category="shoes", quantity=i % 3 + 1, price=9.99 + i, value=19.5,
                   zip="10115", country="DE", customer="c" * 32, token="tok", url="https://x/p",
                   referrer="https://r", page_type="product", placement="hero", query="red")
        for i in range(250)
    ]  # fmt: skip
    ids = add(r, events)
    result = Archiver(r, events_dir, batch_size=100).archive_tenant(T)
    assert (result.events, result.batches, result.pending) == (250, 3, 0)
    assert result.cursor == ids[-1]
    assert r.hget(state_key(T), "cursor").decode() == ids[-1]
    assert r.xlen(STREAM) == 0
    table = read_archive(events_dir, T)
    assert table.schema == SCHEMA
    assert table["stream_id"].to_pylist() == ids
    assert [row_to_event(row) for row in table.to_pylist()] == events
    assert_exactly_once(r, events_dir, ids)


def test_nothing_to_do_is_harmless(r: redis.Redis, events_dir: Path) -> None:
    result = Archiver(r, events_dir).archive_tenant(T)
    assert (result.events, result.files, result.cursor) == (0, [], None)
    assert read_archive(events_dir, T).num_rows == 0
    assert read_archive(events_dir, "other-tenant").schema == SCHEMA


def test_date_partitioning_uses_utc_day_of_server_ts(r: redis.Redis, events_dir: Path) -> None:
    midnight = (now_ms() // DAY_MS - 3) * DAY_MS
    stamps = [midnight - 1, midnight, midnight + 1, midnight + DAY_MS - 1, midnight + DAY_MS,
              midnight + 2 * DAY_MS + 12345]  # fmt: skip
    ids = add(r, [make_event(i, s) for i, s in enumerate(stamps)])
    Archiver(r, events_dir, batch_size=4).archive_tenant(T, compact=False)
    seen = {}
    for f in archive_files(events_dir):
        rows = pq.read_table(events_dir / f.key).to_pylist()
        for row in rows:
            assert row["server_ts"].date().isoformat() == f.date
            seen[row["stream_id"]] = f.date
        # the name records the batch's range; every row lies inside it
        assert all(f.first <= StreamId.parse(row["stream_id"]) <= f.last for row in rows)
    expected = {
        sid: dt.datetime.fromtimestamp(s / 1000, dt.UTC).date().isoformat()
        for sid, s in zip(ids, stamps, strict=True)
    }
    assert seen == expected
    assert len({*expected.values()}) == 4
    day2 = (dt.date.fromisoformat(expected[ids[1]]) + dt.timedelta(days=1)).isoformat()
    only = read_archive(events_dir, T, start_date=day2, end_date=day2)
    assert (
        only["stream_id"].to_pylist() == [k for k, v in expected.items() if v == day2] == [ids[4]]
    )
    with pytest.raises(ValueError, match="start_date"):
        read_archive(events_dir, T, start_date="yesterday")


def test_unknown_fields_and_mistyped_values_land_in_extra(r: redis.Redis, events_dir: Path) -> None:
    e = make_event(1, quantity="2", price="cheap", brand_new={"nested": [1, 2.5, "x"]}, flag=True)
    e["product_id"] = 123  # a numeric id is still an id
    ids = add(r, [e])
    Archiver(r, events_dir).archive_tenant(T)
    row = read_archive(events_dir, T).to_pylist()[0]
    assert row["product_id"] == "123"
    assert row["quantity"] is None and row["price"] is None
    assert orjson.loads(row["extra"]) == {
        "quantity": "2", "price": "cheap", "brand_new": {"nested": [1, 2.5, "x"]}, "flag": True,
    }  # fmt: skip
    assert row["stream_id"] == ids[0]


def test_unarchivable_entries_are_quarantined_not_blocking(
    r: redis.Redis, events_dir: Path
) -> None:
    good = add(r, [make_event(1)])
    bad = [
        add_raw(r, b"{not json"),
        add_raw(r, orjson.dumps({"id": "x", "type": "page_view", "ts": 1, "visitor": "v"})),
        r.xadd(STREAM, {"other": b"1"}).decode(),
        add_raw(r, orjson.dumps([1, 2])),
    ]
    good += add(r, [make_event(2)])
    result = Archiver(r, events_dir).archive_tenant(T)
    assert (result.events, result.quarantined) == (6, 4)
    assert read_archive(events_dir, T)["stream_id"].to_pylist() == good
    lines = [orjson.loads(ln) for p in quarantine_paths(events_dir)
             for ln in p.read_bytes().splitlines()]  # fmt: skip
    assert [q["stream_id"] for q in lines] == bad
    assert "server_ts" in lines[1]["reason"] and "not JSON" in lines[0]["reason"]
    assert lines[0]["payload"] == "{not json"
    assert_exactly_once(r, events_dir, good + bad)


def test_tenants_are_isolated(r: redis.Redis, events_dir: Path) -> None:
    create_tenant(r, "shop-a")
    create_tenant(r, "shop-b")
    a = add(r, [make_event(i) for i in range(5)], "shop-a")
    b = add(r, [make_event(i) for i in range(3)], "shop-b")
    results = Archiver(r, events_dir).archive_all()
    assert {k: v.events for k, v in results.items()} == {"shop-a": 5, "shop-b": 3}
    assert read_archive(events_dir, "shop-a")["stream_id"].to_pylist() == a
    assert read_archive(events_dir, "shop-b")["stream_id"].to_pylist() == b
    with pytest.raises(TenantError):
        read_archive(events_dir, "../shop-a")


def test_read_archive_dedupes_retries_by_visitor_and_id(r: redis.Redis, events_dir: Path) -> None:
    e = make_event(1)
    ids = add(r, [e, make_event(2), e, {**e, "visitor": "someone-else"}])
    Archiver(r, events_dir).archive_tenant(T)
    assert read_archive(events_dir, T)["stream_id"].to_pylist() == [ids[0], ids[1], ids[3]]
    assert read_archive(events_dir, T, dedupe=False).num_rows == 4
    cols = read_archive(events_dir, T, columns=["type", "server_ts"])
    assert cols.column_names == ["type", "server_ts"] and cols.num_rows == 3
    with pytest.raises(ValueError, match="unknown archive column"):
        read_archive(events_dir, T, columns=["nope"])


# -- crash safety ----------------------------------------------------------------------------
def crash_at(step: str, nth: int = 1):
    seen = collections.Counter()

    def hook(s: str) -> None:
        seen[s] += 1
        if s == step and seen[s] == nth:
            raise Crash(step)

    return hook


def old_day_events(start: int, n: int) -> list[dict]:
    """Events of a closed day, so that compaction merges their files right away."""
    base = (now_ms() // DAY_MS - 2) * DAY_MS + 3_600_000
    return [make_event(i, base + i) for i in range(start, start + n)]


@pytest.mark.parametrize(
    ("step", "nth"),
    [("staged", 1), ("staged", 2), ("committed", 1), ("committed", 3), ("moved", 2),
     ("trimmed", 1), ("compacted", 1)],
)  # fmt: skip
def test_crash_at_any_step_then_rerun_archives_exactly_once(
    r: redis.Redis, events_dir: Path, step: str, nth: int
) -> None:
    ids = add(r, old_day_events(0, 70) + [make_event(100 + i) for i in range(30)])
    with pytest.raises(Crash):
        Archiver(r, events_dir, batch_size=20, hook=crash_at(step, nth)).archive_tenant(T)
    ids += add(r, [make_event(200 + i) for i in range(15)])  # traffic goes on meanwhile
    result = Archiver(r, events_dir, batch_size=20).archive_tenant(T)
    if step == "committed":
        assert result.recovered.get("rolled_forward") == 1
    if step == "staged":
        assert result.recovered.get("discarded_batches") == 1
    if step == "compacted":
        assert result.recovered.get("redundant_files", 0) >= 2
    assert_exactly_once(r, events_dir, ids)


def test_leftover_temp_files_and_stale_staging_are_removed(
    r: redis.Redis, events_dir: Path
) -> None:
    ids = add(r, [make_event(i) for i in range(10)])
    Archiver(r, events_dir).archive_tenant(T)
    tdir = tenant_dir(events_dir, T)
    part = next(p for p in tdir.iterdir() if p.name.startswith("date="))
    (part / ".9-0_9-9.parquet.dead.tmp").write_bytes(b"half a file")
    stale = tdir / STAGING / "1-0_2-0.deadbeef" / part.name
    stale.mkdir(parents=True)
    (stale / "1-0_2-0.parquet").write_bytes(b"uncommitted")
    assert read_archive(events_dir, T).num_rows == 10  # readers never see either
    ids += add(r, [make_event(20)])
    result = Archiver(r, events_dir).archive_tenant(T)
    assert result.recovered == {"discarded_batches": 1, "temp_files": 1}
    assert_exactly_once(r, events_dir, ids)


# The child holds its lock 5 s: long enough for a batch on a loaded 2-core machine (with 2 s,
# fsyncs slowed by other work made it lose the lock before the planned crash), short enough
# for the rerun to wait it out.
def _crash_child(redis_url: str, events_dir: Path, step: str, nth: int, batch: int) -> int:
    code = (
        "import os, sys, collections\n"
        "from clickstream.archiver import Archiver\n"
        "from store.redis_client import client_for_url\n"
        "seen = collections.Counter()\n"
        "def hook(s):\n"
        "    seen[s] += 1\n"
        f"    if s == {step!r} and seen[s] == {nth}:\n"
        "        os._exit(70)\n"
        f"r = client_for_url({redis_url!r})\n"
        f"Archiver(r, {str(events_dir)!r}, batch_size={batch}, lock_ttl_ms=60_000, hook=hook)"
        f".archive_tenant({T!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, timeout=60).returncode


@pytest.mark.parametrize(("step", "nth"), [("staged", 2), ("committed", 2), ("compacted", 1)])
def test_real_process_crash_then_rerun(
    r: redis.Redis, redis_url: str, events_dir: Path, step: str, nth: int
) -> None:
    ids = add(r, old_day_events(0, 50) + [make_event(100 + i) for i in range(10)])
    assert _crash_child(redis_url, events_dir, step, nth, batch=15) == 70
    assert r.get(lock_key(T)) is not None  # a crashed archiver leaves its lock behind...
    assert Archiver(r, events_dir).archive_tenant(T).skipped == "locked"
    ids += add(r, [make_event(300)])
    # ...until it expires. The child's lock lives as long as a real one, since a batch on a
    # loaded machine outlived a short one (the child then stopped on ArchiveLockLost instead of
    # the planned crash); Redis's expiry is not under test, so the test brings the end forward.
    r.pexpire(lock_key(T), 50)
    result = Archiver(r, events_dir).archive_tenant(T, lock_wait_s=10)
    assert result.skipped is None
    assert_exactly_once(r, events_dir, ids)


def test_lost_commit_record_is_restored_from_file_names(r: redis.Redis, events_dir: Path) -> None:
    """Redis restarted from an older snapshot: cursor gone, entries not trimmed yet."""
    ids = add(r, [make_event(i) for i in range(40)])
    with pytest.raises(Crash):
        Archiver(r, events_dir, batch_size=40, hook=crash_at("moved")).archive_tenant(T)
    r.delete(state_key(T))
    assert r.xlen(STREAM) == 40
    ids += add(r, [make_event(50)])
    result = Archiver(r, events_dir).archive_tenant(T)
    assert result.recovered["cursor_restored"] == ids[39]
    assert result.events == 1
    assert_exactly_once(r, events_dir, ids)


event_strategy = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=12),
        "type": st.sampled_from(["page_view", "product_view", "search", "purchase", "new_type"]),
        "ts": st.integers(0, 2**42),
        "server_ts": st.integers(now_ms() - 3 * DAY_MS, now_ms()),
        "visitor": st.text(min_size=1, max_size=8),
    },
    optional={
        "product_id": st.text(max_size=10),
        "quantity": st.integers(-(2**63), 2**63 - 1),
        "price": st.floats(allow_nan=False, allow_infinity=False),
        "zip": st.text(max_size=6),
        "customer": st.text(min_size=1, max_size=8),
        "unknown_k": st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=6,
        ),
    },
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(st.one_of(event_strategy, st.just(None)), min_size=1, max_size=60),
    batch_size=st.integers(1, 25),
    step=st.sampled_from(["staged", "committed", "moved", "trimmed", "compacted", None]),
    nth=st.integers(1, 3),
)
def test_random_batches_and_crashes_archive_exactly_once(
    r: redis.Redis, events, batch_size: int, step: str | None, nth: int
) -> None:
    r.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        events_dir = Path(tmp)
        ids, good = [], {}
        for e in events:
            if e is None:  # an entry that cannot become a row
                ids.append(add_raw(r, b"\xff garbage"))
            else:
                sid = add(r, [e])[0]
                ids.append(sid)
                good[sid] = e
        hook = crash_at(step, nth) if step else None
        with contextlib.suppress(Crash):
            Archiver(r, events_dir, batch_size=batch_size, hook=hook).archive_tenant(T)
        Archiver(r, events_dir, batch_size=batch_size).archive_tenant(T)
        assert_exactly_once(r, events_dir, ids)
        rows = read_archive(events_dir, T, dedupe=False).to_pylist()
        assert {row["stream_id"]: row_to_event(row) for row in rows} == good


# -- concurrency -----------------------------------------------------------------------------
def test_concurrent_archivers_do_not_duplicate(r: redis.Redis, events_dir: Path) -> None:
    ids: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        for chunk in range(60):
            ids.extend(add(r, [make_event(chunk * 50 + i) for i in range(50)]))
        stop.set()

    def archive() -> None:
        archiver = Archiver(another_client(r), events_dir, batch_size=97)
        try:
            while not stop.is_set():
                archiver.archive_tenant(T, lock_wait_s=0.01)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=archive) for _ in range(3)] + [
        threading.Thread(target=produce)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    Archiver(r, events_dir).archive_tenant(T)
    assert len(ids) == 3000
    assert_exactly_once(r, events_dir, ids)


def test_archiver_whose_lock_expired_cannot_commit(r: redis.Redis, events_dir: Path) -> None:
    ids = add(r, [make_event(i) for i in range(30)])
    other: dict = {}

    def stall(step: str) -> None:
        if step == "staged" and not other:
            # A long pause (GC, swapped out...): the lock expires and another archiver starts.
            r.delete(lock_key(T))
            b = threading.Thread(
                target=lambda: other.update(
                    res=Archiver(r, events_dir).archive_tenant(T, lock_wait_s=5)
                )
            )
            b.start()
            other["thread"] = b
            deadline = time.monotonic() + 5
            while r.get(lock_key(T)) is None and time.monotonic() < deadline:
                time.sleep(0.01)

    with pytest.raises(ArchiveLockLost):
        Archiver(r, events_dir, batch_size=10, hook=stall).archive_tenant(T)
    other["thread"].join(timeout=30)
    assert other["res"].events == 30
    assert_exactly_once(r, events_dir, ids)


# -- erasure and compaction ------------------------------------------------------------------
def test_erase_from_archive_removes_visitor_and_linked_customer_rows(
    r: redis.Redis, events_dir: Path
) -> None:
    events = [make_event(i) for i in range(70)]  # visitors v0..v6
    events.append({**make_event(100), "visitor": "v2", "type": "identify", "customer": "cust-9"})
    add(r, old_day_events(500, 30))
    add(r, events)
    Archiver(r, events_dir, batch_size=25).archive_tenant(T)
    before = read_archive(events_dir, T)
    names_before = sorted(f.name for f in archive_files(events_dir))
    doomed = [row for row in before.to_pylist() if row["visitor"] in ("v1", "v2")]
    removed = erase_from_archive(events_dir, T, visitor_ids=["v1"], customer_ids=["cust-9"])
    assert removed == len(doomed) > 0
    after = read_archive(events_dir, T)
    assert after.num_rows == before.num_rows - removed
    assert not {"v1", "v2"} & set(after["visitor"].to_pylist())
    assert sorted(f.name for f in archive_files(events_dir)) == names_before
    assert erase_from_archive(events_dir, T, visitor_ids=["v1"]) == 0


def test_erase_events_covers_stream_and_archive(r: redis.Redis, events_dir: Path) -> None:
    add(r, [make_event(i) for i in range(14)])
    Archiver(r, events_dir).archive_tenant(T)
    add(r, [make_event(i) for i in range(14, 28)])  # not archived yet
    add_raw(r, orjson.dumps({"visitor": "v3", "broken": True}))
    out = erase_events(r, events_dir, T, visitor_ids=["v3"])
    assert out == {"archive_rows": 2, "stream_entries": 3}
    Archiver(r, events_dir).archive_tenant(T)
    assert "v3" not in read_archive(events_dir, T)["visitor"].to_pylist()
    assert read_archive(events_dir, T).num_rows == 24


def test_compaction_merges_small_files_and_keeps_rows(r: redis.Redis, events_dir: Path) -> None:
    ids = add(r, old_day_events(0, 60))
    Archiver(r, events_dir, batch_size=7).archive_tenant(T, compact=False)
    assert len(archive_files(events_dir)) == 9
    assert compact_tenant(events_dir, T, target_bytes=10**9) == 9
    files = archive_files(events_dir)
    assert len(files) == 1 and (str(files[0].first), str(files[0].last)) == (ids[0], ids[-1])
    assert read_archive(events_dir, T)["stream_id"].to_pylist() == ids
    assert_exactly_once(r, events_dir, ids)


# -- worker and CLI --------------------------------------------------------------------------
def test_enqueue_job_and_burst_worker_archives(r: redis.Redis, settings) -> None:
    from app.jobs import JobNotFound, enqueue, job_status
    from app.worker import run_worker
    from store.redis_client import queue_redis

    create_tenant(r, T)
    ids = add(r, [make_event(i) for i in range(25)])
    q = queue_redis(settings)  # the store's server, or beside a cluster store its own
    ok = enqueue(q, "app.jobs.archive_job", T)
    bad = enqueue(q, "clickstream.archive_files.tenant_dir", "/nowhere", "Not A Tenant!")
    assert job_status(q, ok)["status"] == "queued"
    summary = run_worker(settings, burst=True)
    assert summary["worked_jobs"] is True
    status = job_status(q, ok)
    assert status["status"] == "finished" and status["error"] is None
    assert status["result"][T]["events"] == 25
    failed = job_status(q, bad)
    assert failed["status"] == "failed" and "TenantError" in failed["error"]
    assert read_archive(settings.events_dir, T)["stream_id"].to_pylist() == ids
    with pytest.raises(JobNotFound):
        job_status(q, "no-such-job")


def test_worker_archives_in_background_and_stops_on_sigterm(r: redis.Redis, settings) -> None:
    create_tenant(r, T)
    ids = add(r, [make_event(i) for i in range(40)])
    code = (
        "from app.settings import load_settings\n"
        "from app.worker import run_worker\n"
        "run_worker(load_settings(), burst=False, archive_interval=0.2, archive_max_delay=0.0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while r.xlen(STREAM) and time.monotonic() < deadline:
            time.sleep(0.1)
        ids += add(r, [make_event(100)])
        while r.xlen(STREAM) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert_exactly_once(r, settings.events_dir, ids)


def test_archive_cli_prints_per_tenant_counts(r: redis.Redis) -> None:
    from app.cli.worker import archive

    create_tenant(r, T)
    create_tenant(r, "quiet")
    add(r, [make_event(i) for i in range(12)])
    out = CliRunner().invoke(archive, ["--once"])
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.output)
    assert data["events"] == 12 and data["files"] == 1
    assert data["tenants"][T]["events"] == 12 and data["tenants"]["quiet"]["events"] == 0
    missing = CliRunner().invoke(archive, ["--tenant", "nobody"])
    assert missing.exit_code == 2 and "no tenant named 'nobody'" in missing.output


def test_an_archiver_takes_back_the_lock_it_could_not_release(r: redis.Redis, events_dir: Path):
    """A round that died with the store (Redis restarting mid-round) leaves its lock; the same
    archiver goes on at its next round instead of waiting 60 s for it to expire, while any
    other archiver is still refused."""
    from clickstream.archiver import _Lock

    ids = add(r, [make_event(i) for i in range(5)])
    archiver = Archiver(r, events_dir)
    assert _Lock(archiver, T).acquire(0)  # as if the round died before its release
    assert Archiver(r, events_dir).archive_tenant(T).skipped == "locked"
    result = archiver.archive_tenant(T)
    assert result.skipped is None and result.events == 5
    assert_exactly_once(r, events_dir, ids)
