"""The background worker: an rq worker for jobs (training, reports...) plus the archiver loop.

Jobs run in a freshly spawned interpreter (rq's SpawnWorker) rather than a fork: the worker
process also runs the archiver thread, and forking a multi-threaded process can copy a lock held
by that thread into the job and deadlock it.

SIGTERM or SIGINT stop the worker warmly: rq finishes the running job, the archiver thread
finishes its current batch, and the process exits. Even a hard kill loses nothing: every step of
the archiver is crash safe (see ``archiver.py``).
"""

from __future__ import annotations

import logging
import signal
import threading
import time

import redis

from app.jobs import QUEUE_NAME
from clickstream.archiver import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOCK_TTL_MS,
    ArchiveBusy,
    ArchiveLockLost,
    Archiver,
)
from store.artifacts import events_store
from store.config import Settings
from store.redis_client import get_redis, queue_redis, redis_url
from store.tenants import list_tenants

try:  # rq >= 2: jobs in a spawned interpreter
    from rq.worker import SpawnWorker as _WorkerClass
except ImportError:  # pragma: no cover - older rq forks
    from rq import Worker as _WorkerClass

log = logging.getLogger(__name__)

# A tenant is archived when this many events wait, or when the oldest waited this long.
ARCHIVE_MIN_EVENTS = DEFAULT_BATCH_SIZE
ARCHIVE_MAX_DELAY_S = 60.0
# Batches per tenant per round, so that a large backlog does not delay a stop request or
# starve the other tenants.
BATCHES_PER_ROUND = 10


class ArchiverLoop(threading.Thread):
    """Archives every due tenant each ``interval`` seconds until ``stop()``.

    Each tenant gets at most BATCHES_PER_ROUND batches per round; a round that leaves a backlog
    is followed at once by the next one.
    """

    def __init__(
        self,
        r: redis.Redis,
        archiver: Archiver,
        interval: float = 5.0,
        min_events: int = ARCHIVE_MIN_EVENTS,
        max_delay_s: float = ARCHIVE_MAX_DELAY_S,
        tenants: list[str] | None = None,
    ) -> None:
        super().__init__(name="offerwise-archiver", daemon=True)
        self.tenants = tenants  # None: every registered tenant, re-read each round
        self.r = r
        self.archiver = archiver
        self.interval = interval
        self.min_events = min_events
        self.max_delay_s = max_delay_s
        self.stopping = threading.Event()
        self.rounds = 0
        self.archived = 0

    def stop(self) -> None:
        self.stopping.set()

    def round(self) -> bool:
        """One pass over the tenants; True when some tenant hit the batch cap (a backlog)."""
        behind = False
        names = self.tenants if self.tenants is not None else [t.name for t in list_tenants(self.r)]
        for name in names:
            if self.stopping.is_set():
                break
            if not self.archiver.is_due(name, self.min_events, self.max_delay_s):
                continue
            try:
                result = self.archiver.archive_tenant(name, max_batches=BATCHES_PER_ROUND)
            except (ArchiveBusy, ArchiveLockLost) as err:
                # Another archiver or a long reader has this tenant: the next round retries.
                log.warning("archiving %s skipped this round: %s", name, err)
                continue
            self.archived += result.events
            behind = behind or result.batches >= BATCHES_PER_ROUND
        self.rounds += 1
        return behind

    def run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                behind = self.round()
                failures = 0
            except Exception:
                # Redis restarting, a full disk...: log, back off, retry; the protocol is safe
                # to interrupt anywhere.
                failures += 1
                log.exception("archiver round failed (%d in a row)", failures)
                behind = False
            if not behind:
                self.stopping.wait(min(self.interval * (2 ** min(failures, 6)), 300.0))


def run_worker(
    settings: Settings,
    burst: bool = False,
    archive_interval: float = 5.0,
    archive_max_delay: float = ARCHIVE_MAX_DELAY_S,
    archive_lock_ttl: float = DEFAULT_LOCK_TTL_MS / 1000,
) -> dict:
    """Run jobs from the "offerwise" queue and the archiver until SIGTERM/SIGINT.

    With ``burst`` it runs the queued jobs, then archives every tenant once and returns.
    ``archive_lock_ttl``: seconds a dead archiver's tenant lock outlives its last renewal
    (another worker's archiver takes the tenant over then).
    Must be called from the main thread (signal handling). Returns a summary dict.
    """
    # Hold a "worker" lease on the embedded Redis so it stays up while this process runs.
    redis_url(settings, role="worker")
    conn = get_redis(settings, decode=False)
    archiver = Archiver(conn, events_store(settings), lock_ttl_ms=round(archive_lock_ttl * 1000))
    # The queue may live on another Redis than the store (a cluster store: queue_redis).
    worker = _WorkerClass([QUEUE_NAME], connection=queue_redis(settings))
    loop = None
    if not burst:
        loop = ArchiverLoop(conn, archiver, archive_interval, max_delay_s=archive_max_delay)
        loop.start()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        worked = worker.work(burst=burst, logging_level=settings.log_level)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        if loop is not None:
            loop.stop()
            loop.join(timeout=120)
    summary: dict = {"worked_jobs": bool(worked), "seconds": round(time.monotonic() - started, 3)}
    if loop is not None:
        summary["archived_events"] = loop.archived
    if burst:
        results = archiver.archive_all(lock_wait_s=30.0)
        summary["archived"] = {k: v.to_dict() for k, v in results.items()}
    return summary
