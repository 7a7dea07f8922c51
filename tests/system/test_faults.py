"""Fault injection under load: kill -9 of the archiver, of a gunicorn worker and of Redis while
clients send collect batches with unique event ids, on a real ``offerwise serve`` (2 workers) and
``offerwise worker`` over the embedded Redis of a fresh data dir.

Afterwards every event answered 200 is stored exactly once over the stream and the Parquet
archive, nothing is stored that was never sent, every batch was answered 200 in the end (its
client retried it with the same event ids), and /readyz is 200 with no operator action: serve
restarted Redis and gunicorn its worker; the new archiver finished what the killed one left,
once the killed one's lock expired (``LOCK_TTL_S`` after its last renewal: the workers run with
a shorter lock expiry than the default 60 s, which would only make the test wait).

What a 200 promises when Redis itself is killed depends on ``OFFERWISE_REDIS_FSYNC``:

- ``always``: Redis writes and fsyncs its append-only file before it replies, so nothing
  acknowledged is lost, by a Redis crash or a host crash. Tested strictly (two kills).
- ``everysec`` (default): Redis normally ``write(2)``s the append-only file before it replies and
  fsyncs it once a second in a background thread. A written page is in the kernel's page cache,
  which outlives the process, so a kill -9 of Redis alone usually loses nothing. But while a
  background fsync is still running, Redis postpones the write (for up to 2 s) and still sends
  the replies: a kill -9 in that window loses what it acknowledged meanwhile. Measured with
  redis-server 7.0 on a 2-core VM with ext4: at least 6 of 120 kills under a write load lost the
  writes acknowledged in the last 3 to 190 ms before the kill. The test allows exactly that: an
  acknowledged event may be missing only if its 200 came less than ``FSYNC_WINDOW_S`` before a
  Redis kill. A host crash (power loss, kernel panic) loses up to about 1 s, at worst 2 s, of
  acknowledged events.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from clickstream.archive_files import STAGING, tenant_dir
from clickstream.archiver import read_archive
from store import keys
from tests.clickstream.test_archiver import assert_exactly_once, physical_rows, quarantined_ids
from tests.helpers import wait_for
from tests.system.collect_load import CollectLoad
from tests.system.service import Service, kill9

pytestmark = pytest.mark.slow

TENANT = "faults"
LOAD_S = 15.0
# Redis postpones an append-only write for at most 2 s while a background fsync runs; a reply
# sent just before the kill may reach the client a little after it.
FSYNC_WINDOW_S = 3.0
REPLY_SLACK_S = 1.0
# The killed archiver's lock expires LOCK_TTL_S after its last renewal; then the new one takes
# over. With the worker's default (60 s) the test waited about 45 s after its 15 s of load for
# that; with 12 s the stream was archived 4 s after the load stopped.
LOCK_TTL_S = 12.0
DRAIN_TIMEOUT_S = 110.0


class Timeline:
    """What the test did and when, relative to the start of the load, for failure messages."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lines: list[str] = []

    def add(self, what: str, at: float | None = None) -> None:
        t = (time.monotonic() if at is None else at) - self.start
        self.lines.append(f"{t:6.2f} s  {what}")

    def sleep_until(self, offset: float) -> None:
        time.sleep(max(0.0, self.start + offset - time.monotonic()))

    def __str__(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[[str], Service]]:
    started: list[Service] = []

    def start(fsync: str) -> Service:
        logs = tmp_path / "logs"
        logs.mkdir()
        # A short data dir keeps the Redis socket path under the Unix limit.
        service = Service(tmp_path / "v", logs, {"OFFERWISE_REDIS_FSYNC": fsync})
        started.append(service)
        service.start_serve(workers=2)
        return service

    yield start
    for service in started:
        service.stop()


@contextlib.contextmanager
def diagnostics(service: Service, load: CollectLoad, timeline: Timeline) -> Iterator[None]:
    """On failure, print what pytest shows beside the assertion: the load, the faults, logs."""
    try:
        yield
    except BaseException:
        print(f"load: {load.summary()}\ntimeline:\n{timeline}\n{service.log_tails()}")
        raise
    print(f"timeline:\n{timeline}")  # shown with -s: what the faults cost


# -- faults -----------------------------------------------------------------------------------
def kill_archiver_mid_batch(service: Service, worker: subprocess.Popen) -> str:
    """kill -9 of ``offerwise worker`` while a batch sits in the archive's staging dir (written,
    maybe committed, not yet moved into place)."""
    staging = tenant_dir(service.events_dir, TENANT) / STAGING

    def staged() -> str | None:
        with contextlib.suppress(FileNotFoundError):
            return next((d.name for d in os.scandir(staging) if d.is_dir()), None)
        return None

    batch = wait_for(staged, "the archiver staging a batch", timeout=30, every=0.001)
    kill9(worker.pid)
    worker.wait(timeout=10)
    committed = (service.redis().hget(keys.archive_state(TENANT), "batch") or b"").decode()
    return f"killed the archiver (pid {worker.pid}) with batch {batch} staged, " + (
        "committed" if committed == batch else "not committed"
    )


def kill_a_gunicorn_worker(service: Service) -> str:
    victim = service.gunicorn_workers()[0].pid
    kill9(victim)

    def replaced() -> bool:
        pids = set()
        for worker in service.gunicorn_workers():
            with contextlib.suppress(psutil.NoSuchProcess):  # reaped meanwhile
                if worker.status() != psutil.STATUS_ZOMBIE:
                    pids.add(worker.pid)
        return len(pids) == 2 and victim not in pids

    wait_for(replaced, "gunicorn replacing its killed worker", timeout=30)
    return f"killed gunicorn worker {victim}; gunicorn started another"


def kill_redis(service: Service, timeline: Timeline) -> float:
    """kill -9 of the embedded redis-server; returns when serve has started it again."""
    old = service.redis_pid()
    killed_at = kill9(old)
    timeline.add(f"killed redis-server {old}", killed_at)

    def restarted() -> bool:
        with contextlib.suppress(ValueError, FileNotFoundError):
            return service.redis_pid() != old and service.embedded.is_running()
        return False

    wait_for(restarted, "serve restarting the embedded Redis", timeout=30, every=0.02)
    timeline.add(f"redis-server running again as {service.redis_pid()}")
    return killed_at


# -- checks -----------------------------------------------------------------------------------
def stored_events(service: Service) -> collections.Counter:
    """(visitor, event id) of every event in the tenant's stream and Parquet archive."""
    found: collections.Counter = collections.Counter()
    for _, fields in service.redis().xrange(keys.event_stream(TENANT)):
        event = orjson.loads(fields[b"e"])
        found[(event["visitor"], event["id"])] += 1
    table = read_archive(service.events_dir, TENANT, columns=["visitor", "id"], dedupe=False)
    found.update(zip(table["visitor"].to_pylist(), table["id"].to_pylist(), strict=True))
    return found


def drain_and_stop_workers(service: Service, timeline: Timeline) -> None:
    """The running worker archives the whole stream by itself; then it is stopped warmly."""
    stream = keys.event_stream(TENANT)
    wait_for(
        lambda: service.redis().xlen(stream) == 0,
        "the worker archiving the whole stream",
        timeout=DRAIN_TIMEOUT_S,
        every=0.5,
    )
    timeline.add("the stream is archived")
    for worker in service.workers:
        if worker.poll() is None:
            worker.terminate()
            assert worker.wait(timeout=60) == 0, "the worker did not stop cleanly"


def check_exactly_once(
    service: Service, load: CollectLoad, redis_kills: list[float], fsync: str
) -> str:
    stored = stored_events(service)
    sent = {(b.visitor, i) for b in load.batches for i in b.ids}
    acked = {(b.visitor, i): b.acked_at for b in load.batches if b.acked_at for i in b.ids}
    duplicates = {k: n for k, n in stored.items() if n > 1}
    never_sent = set(stored) - sent
    lost = {k: t for k, t in acked.items() if k not in stored}
    allowed = set()
    if fsync == "everysec":
        allowed = {
            k
            for k, t in lost.items()
            if any(kill - FSYNC_WINDOW_S <= t <= kill + REPLY_SLACK_S for kill in redis_kills)
        }
    start = load.started_at
    report = (
        f"sent {len(sent)} events, {len(acked)} acknowledged, {stored.total()} stored "
        f"({len(stored)} distinct); lost {len(lost)} acknowledged (acknowledged at "
        f"{sorted(round(t - start, 2) for t in set(lost.values()))[:10]} s; Redis killed at "
        f"{[round(k - start, 2) for k in redis_kills]} s, appendfsync {fsync}; "
        f"{len(allowed)} within its fsync window), first lost {sorted(lost)[:5]}; "
        f"duplicates {sorted(duplicates.items())[:5]}; never sent {sorted(never_sent)[:5]}"
    )
    print(report)
    assert not load.unexpected, f"unexpected answers: {load.unexpected[:5]}; {report}"
    assert len(acked) == len(sent), f"some batches were never answered 200; {report}"
    assert not duplicates, report
    assert not never_sent, report
    assert not set(lost) - allowed, report
    assert not quarantined_ids(service.events_dir, TENANT), "events were quarantined"
    # Stream empty, no staging or temp debris, no file covered by another, and no stream entry in
    # two files.
    archived = physical_rows(service.events_dir, TENANT)
    assert_exactly_once(service.redis(), service.events_dir, list(archived), tenant=TENANT)
    return report


def assert_load_went_on(load: CollectLoad, after: float) -> None:
    """Batches were answered 200 after the last fault: the service came back under the load."""
    later = sum(1 for b in load.batches if b.acked_at and b.acked_at > after + 1.0)
    assert later >= 20, f"only {later} batches answered 200 after the last fault"


def assert_ready_without_help(service: Service) -> None:
    import requests

    assert requests.get(f"{service.base_url}/readyz", timeout=10).status_code == 200
    assert service.serve is not None and service.serve.poll() is None


# -- scenarios --------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_kill_9_of_archiver_gunicorn_worker_and_redis_under_load_loses_and_duplicates_nothing(
    services,
):
    service = services("everysec")
    site_key = service.create_tenant(TENANT)
    worker = service.start_worker(lock_ttl=LOCK_TTL_S)
    load = CollectLoad(service.base_url, site_key, clients=4)
    timeline = Timeline()
    redis_kills: list[float] = []
    with diagnostics(service, load, timeline):
        load.start()
        timeline.start = load.started_at
        try:
            timeline.sleep_until(1.0)
            timeline.add(kill_archiver_mid_batch(service, worker))
            # As a process manager would; it starts while the load goes on.
            replacement = service.start_worker(wait=False, lock_ttl=LOCK_TTL_S)
            timeline.add("started a new worker (its archiver waits for the dead one's lock)")
            timeline.sleep_until(5.0)
            timeline.add(kill_a_gunicorn_worker(service))
            timeline.sleep_until(9.0)
            redis_kills.append(kill_redis(service, timeline))
            timeline.sleep_until(LOAD_S)
        finally:
            load.stop()
        timeline.add(f"load stopped: {load.summary()}")
        assert_ready_without_help(service)
        service.wait_for_worker(replacement)
        drain_and_stop_workers(service, timeline)
        check_exactly_once(service, load, redis_kills, "everysec")
        assert_load_went_on(load, after=redis_kills[-1])


@pytest.mark.timeout(180)
def test_kill_9_of_redis_with_appendfsync_always_loses_nothing_acknowledged(services):
    service = services("always")
    site_key = service.create_tenant(TENANT)
    service.start_worker()
    load = CollectLoad(service.base_url, site_key, clients=4)
    timeline = Timeline()
    redis_kills: list[float] = []
    with diagnostics(service, load, timeline):
        load.start()
        timeline.start = load.started_at
        try:
            for at in (3.0, 9.0):
                timeline.sleep_until(at)
                redis_kills.append(kill_redis(service, timeline))
            timeline.sleep_until(LOAD_S)
        finally:
            load.stop()
        timeline.add(f"load stopped: {load.summary()}")
        assert_ready_without_help(service)
        # The restarted server runs with the configured policy, not Redis's default.
        assert service.redis().config_get("appendfsync") == {"appendfsync": "always"}
        drain_and_stop_workers(service, timeline)
        check_exactly_once(service, load, redis_kills, "always")
        assert_load_went_on(load, after=redis_kills[-1])
