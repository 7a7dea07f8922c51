"""``offerwise jobs show ID [--wait]``: a background job's status, its stage and progress
(training: product k of N) and, for a failed job, the reason."""

from __future__ import annotations

import sys
import time

import click

from app.cli.output import emit, fail
from app.jobs import TERMINAL_STATUSES, JobNotFound, job_status
from app.settings import load_settings
from store.redis_client import get_redis

# Exit code of ``show`` for a job that failed, stopped or was canceled (a script waiting on a
# training can tell it from a finished one without parsing the JSON).
JOB_FAILED_EXIT = 1


def _line(status: dict) -> str:
    progress = status.get("meta", {}).get("progress")
    text = f"{status['id']}: {status['status']}"
    if progress:
        text += f", {progress['stage']} ({progress['done']}/{progress['total']})"
    return text


@click.group("jobs")
def jobs() -> None:
    """Background jobs (training, CRM imports, retraining)."""


@jobs.command("show")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Poll until the job ends, progress on stderr.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between polls with --wait.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="With --wait: give up after this many seconds (exit 2).")  # fmt: skip
def show(job_id: str, wait: bool, interval: float, timeout: float | None) -> None:
    """Print the job's status as JSON (stage and progress in ``meta.progress``, the reason of
    a failure in ``error``); exit 1 when the job failed."""
    conn = get_redis(load_settings(), decode=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        try:
            status = job_status(conn, job_id)
        except JobNotFound as err:
            fail(str(err))
        if not wait or status["status"] in TERMINAL_STATUSES:
            break
        line = _line(status)
        if line != last:
            click.echo(line, err=True)
            last = line
        if deadline is not None and time.monotonic() > deadline:
            emit(status)
            fail(f"job {job_id} still {status['status']} after {timeout:g} s")
        time.sleep(interval)
    emit(status)
    if status["status"] in TERMINAL_STATUSES - {"finished"}:
        sys.exit(JOB_FAILED_EXIT)
