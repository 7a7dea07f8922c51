"""The background job queue (rq) and the jobs the API and CLI put on it.

The queue's Redis connection is an argument, never a global (rq dropped its implicit connection
for the same reason: tests and multi-store setups). The jobs themselves run in the worker's
freshly spawned interpreter (``app.worker``), so each job assembles its own settings and store
connection from the process environment, the one place below the entry points that may read it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, get_current_job

from app.settings import load_settings
from clickstream.archiver import Archiver
from enrichment.crm import CrmImportError, ImportOptions, import_crm
from models.pipeline import train_and_register
from models.retrain import retrain_erased
from models.training import ProgressFn, TrainingError, TrainParams
from store import keys
from store.artifacts import events_store
from store.redis_client import get_redis

QUEUE_NAME = keys.JOB_QUEUE
DEFAULT_JOB_TIMEOUT = 3600  # seconds; training a large tenant takes a while


class JobNotFound(LookupError):
    pass


def job_queue(conn: redis.Redis) -> Queue:
    """The queue on ``conn``, which must not decode responses (rq stores pickled bytes)."""
    return Queue(QUEUE_NAME, connection=conn)


def enqueue(conn: redis.Redis, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Queue ``func(*args, **kwargs)`` for the worker; returns the job id.

    The function must be importable by the worker (a dotted path like ``"app.jobs.train_job"``
    or a module-level function). rq's job options (``job_timeout``, ``result_ttl``, ``job_id``,
    ``description``, ``meta``, ``depends_on``, ``retry``...) are taken from ``kwargs``.
    """
    kwargs.setdefault("job_timeout", DEFAULT_JOB_TIMEOUT)
    return job_queue(conn).enqueue(func, *args, **kwargs).id


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_status(conn: redis.Redis, job_id: str, tenant: str | None = None) -> dict:
    """``{"id", "func", "status", "enqueued_at", "started_at", "ended_at", "result", "error",
    "meta"}``.

    ``status`` is rq's (queued, started, finished, failed, deferred, scheduled, stopped,
    canceled); ``error`` is the reason a job gave for failing (``JobFailed``), else the last
    line of the failure's traceback. ``meta["progress"]`` is ``{"stage", "done", "total",
    "at"}`` for jobs that report progress (training: "training p7", 7, 20). Raises JobNotFound for an
    unknown, expired or malformed id and, with ``tenant``, for another tenant's job, so one
    tenant cannot read another's jobs.
    """
    try:
        job = Job.fetch(job_id, connection=conn)
    except (NoSuchJobError, ValueError):  # ValueError: not even a well-formed job id
        raise JobNotFound(f"no job {job_id!r} (unknown, or its result expired)") from None
    if tenant is not None and job.meta.get("tenant") != tenant:
        raise JobNotFound(f"no job {job_id!r} for this tenant")
    latest = job.latest_result()
    # A job that failed on purpose left its reason in its meta; anything else (a crash, a
    # timeout) has the last line of its traceback.
    error = job.meta.get("error")
    if error is None and latest is not None and latest.exc_string:
        lines = [ln for ln in latest.exc_string.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else latest.exc_string
    status = job.get_status()
    return {
        "id": job.id,
        "func": job.func_name,
        "status": str(getattr(status, "value", status)),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "result": job.return_value(),
        "error": error,
        "meta": job.meta,
    }


TERMINAL_STATUSES = frozenset({"finished", "failed", "stopped", "canceled"})


class JobFailed(RuntimeError):
    """Raised by a job that cannot do its work: rq marks the job failed (not finished) and
    ``job_status`` shows this message as its ``error``."""


# Progress is written to the job's meta at most this often (plus every stage change and the
# last step): a 20-product training saves a few dozen times, not once per feature chunk.
PROGRESS_EVERY_S = 0.5


def job_progress() -> ProgressFn | None:
    """A progress callback that records ``(stage, done, total)`` in the running job's meta
    for the job API and ``offerwise jobs show``; None outside a job."""
    job = get_current_job()
    if job is None:
        return None
    last = {"stage": None, "at": 0.0}

    def report(stage: str, done: int, total: int) -> None:
        now = time.time()
        group = stage.split(" ", 1)[0]
        if group == last["stage"] and done < total and now - float(last["at"]) < PROGRESS_EVERY_S:
            return
        last.update(stage=group, at=now)
        job.meta["progress"] = {"stage": stage, "done": int(done), "total": int(total), "at": now}
        job.save_meta()

    return report


def _failed(err: Exception) -> JobFailed:
    """Record ``err`` as the running job's reason and return the exception to raise."""
    job = get_current_job()
    if job is not None:
        job.meta["error"] = str(err)
        job.save_meta()
    return JobFailed(str(err))


# -- the jobs: module-level functions the worker imports ------------------------------------


def crm_import_job(tenant: str, upload_dir: str, options: dict) -> dict:
    """Import a spooled CRM upload, then delete the spool (raw ids must not linger on disk)."""
    settings = load_settings()
    folder = Path(upload_dir)
    try:
        holdings = folder / "holdings"
        return import_crm(
            get_redis(settings),
            tenant,
            folder / "customers",
            holdings if holdings.exists() else None,
            options=ImportOptions(**options),
            settings=settings,
        )
    except CrmImportError as err:
        return {**err.report, "status": "rejected", "problem": str(err)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_job(
    tenant: str,
    products: list[str] | None = None,
    label_source: str = "holdings",
    params: dict | None = None,
) -> dict:
    """The background job behind POST /v1/staff/tenants/<t>/train; reports its stage and
    product k of N in the job's meta, and fails (not finishes) with the reason when no model
    could be trained. ``params``: ``TrainParams`` fields to override."""
    settings = load_settings()
    try:
        return train_and_register(
            get_redis(settings),
            settings,
            tenant,
            products,
            label_source,
            params=TrainParams(**params) if params else None,
            progress=job_progress(),
        )
    except TrainingError as err:
        raise _failed(err) from None


def retrain_erased_job(tenant: str) -> dict:
    """The background job behind POST /v1/staff/tenants/<t>/models/retrain-erased."""
    settings = load_settings()
    try:
        return retrain_erased(get_redis(settings), settings, tenant, progress=job_progress())
    except TrainingError as err:
        raise _failed(err) from None


def archive_job(tenant: str | None = None) -> dict:
    """Archive now (one tenant or all); returns the per-tenant results."""
    settings = load_settings()
    archiver = Archiver(get_redis(settings), events_store(settings))
    tenants = [tenant] if tenant else None
    return {k: v.to_dict() for k, v in archiver.archive_all(tenants, lock_wait_s=30.0).items()}
