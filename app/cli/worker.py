"""``offerwise worker`` (jobs + archiver) and ``offerwise archive`` (archive the streams now)."""

from __future__ import annotations

import signal
import sys
import threading

import click

from app.cli.output import emit, fail, store
from app.observability import configure_logging
from app.settings import load_settings
from app.worker import ARCHIVE_MAX_DELAY_S, ArchiverLoop, run_worker
from clickstream.archiver import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOCK_TTL_MS,
    ArchiveBusy,
    ArchiveLockLost,
    Archiver,
)
from store.artifacts import events_store
from store.tenants import TenantError, get_tenant, list_tenants, validate_name


@click.command()
@click.option("--burst", is_flag=True, help="Run the queued jobs, archive once, then exit.")
@click.option(
    "--archive-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
    help="Seconds between archiver rounds.",
)  # fmt: skip
@click.option(
    "--archive-max-delay", type=click.FloatRange(min=0), default=ARCHIVE_MAX_DELAY_S,
    show_default=True,
    help="Archive a tenant once its oldest waiting event is this old (sooner when a full batch waits).",
)  # fmt: skip
@click.option(
    "--archive-lock-ttl", type=click.FloatRange(min=1), default=DEFAULT_LOCK_TTL_MS / 1000,
    show_default=True,
    help="Seconds a tenant's archiver lock outlives its last renewal: how long a crashed "
    "worker's tenants wait before another worker archives them.",
)  # fmt: skip
def worker(
    burst: bool, archive_interval: float, archive_max_delay: float, archive_lock_ttl: float
) -> None:
    """Run the background worker: queued jobs (rq) and the event archiver, until SIGTERM/Ctrl-C."""
    settings = load_settings()
    configure_logging(settings.log_level)
    summary = run_worker(settings, burst, archive_interval, archive_max_delay, archive_lock_ttl)
    if burst:
        emit(summary)


def _tenants(r, names: tuple[str, ...]) -> list[str]:
    if not names:
        return [t.name for t in list_tenants(r)]
    for name in names:
        try:
            validate_name(name)
        except TenantError as err:
            fail(str(err))
        if get_tenant(r, name) is None:
            fail(f"no tenant named {name!r}")
    return list(names)


@click.command()
@click.option(
    "--tenant", "tenants", multiple=True, help="Only this tenant (repeatable); default all."
)
@click.option(
    "--once/--loop", default=True, show_default=True,
    help="Archive what waits now and exit, or keep archiving every --interval seconds.",
)  # fmt: skip
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
    help="Stream entries per Parquet batch.",
)  # fmt: skip
@click.option("--wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait for a tenant another archiver is working on.")  # fmt: skip
def archive(
    tenants: tuple[str, ...], once: bool, interval: float, batch_size: int, wait: float
) -> None:
    """Move the tenants' event streams into the Parquet archive now; prints what was written."""
    settings = load_settings()
    r = store()
    names = _tenants(r, tenants)
    archiver = Archiver(r, events_store(settings), batch_size=batch_size)
    if not once:
        _loop(r, archiver, names if tenants else None, interval)
        return
    results = {}
    try:
        for name in names:
            results[name] = _archive_one(archiver, name, wait).to_dict()
    except (ArchiveBusy, ArchiveLockLost) as err:
        fail(str(err))
    emit(
        {
            "events": sum(x["events"] for x in results.values()),
            "files": sum(len(x["files"]) for x in results.values()),
            "tenants": results,
        }
    )


def _archive_one(archiver: Archiver, name: str, wait: float):
    pending, _ = archiver.pending(name)
    if pending <= archiver.batch_size or not sys.stderr.isatty():
        return archiver.archive_tenant(name, lock_wait_s=wait)
    from rich.progress import Progress

    with Progress(transient=True, console=None) as bar:
        task = bar.add_task(f"archiving {name}", total=pending)
        return archiver.archive_tenant(
            name, lock_wait_s=wait, progress=lambda n: bar.advance(task, n)
        )


def _loop(r, archiver: Archiver, names: list[str] | None, interval: float) -> None:
    """Foreground archiver (no job worker) until Ctrl-C/SIGTERM; prints the total at the end."""
    loop = ArchiverLoop(r, archiver, interval, min_events=1, max_delay_s=0.0, tenants=names)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop.start()
    stop.wait()
    loop.stop()
    loop.join(timeout=120)
    emit({"events": loop.archived, "rounds": loop.rounds})
