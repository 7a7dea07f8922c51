"""The background job queue (rq) and the jobs the API and CLI put on it.

The queue's Redis connection is an argument, never a global (rq dropped its implicit connection
for the same reason: tests and multi-store setups). The jobs themselves run in the worker's
freshly spawned interpreter (``app.worker``), so each job assembles its own settings and store
connection from the process environment, the one place below the entry points that may read it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.settings import load_settings
from clickstream.archiver import Archiver
from enrichment.crm import CrmImportError, ImportOptions, import_crm
from models.pipeline import train_and_register
from models.retrain import retrain_erased
from models.training import TrainingError
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
    canceled); ``error`` is the last line of the failure's traceback. Raises JobNotFound for an
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
    error = None
    if latest is not None and latest.exc_string:
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
    tenant: str, products: list[str] | None = None, label_source: str = "holdings"
) -> dict:
    """The background job behind POST /v1/staff/tenants/<t>/train."""
    settings = load_settings()
    try:
        return train_and_register(get_redis(settings), settings, tenant, products, label_source)
    except TrainingError as err:
        return {"status": "failed", "error": str(err)}


def retrain_erased_job(tenant: str) -> dict:
    """The background job behind POST /v1/staff/tenants/<t>/models/retrain-erased."""
    settings = load_settings()
    try:
        return retrain_erased(get_redis(settings), settings, tenant)
    except TrainingError as err:
        return {"status": "failed", "error": str(err)}


def archive_job(tenant: str | None = None) -> dict:
    """Archive now (one tenant or all); returns the per-tenant results."""
    settings = load_settings()
    archiver = Archiver(get_redis(settings), events_store(settings))
    tenants = [tenant] if tenant else None
    return {k: v.to_dict() for k, v in archiver.archive_all(tenants, lock_wait_s=30.0).items()}
