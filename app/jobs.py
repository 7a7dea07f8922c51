"""Background jobs started from the API (run by ``offerwise worker``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from rq.exceptions import NoSuchJobError
from rq.job import Job

from enrichment.crm import CrmImportError, ImportOptions, import_crm
from store.config import Settings
from store.redis_client import get_redis


def job_view(settings: Settings, job_id: str, tenant: str | None = None) -> dict | None:
    """A job's status and result; None when unknown, malformed, or (with ``tenant``) not
    that tenant's, so one tenant cannot read another's jobs."""
    try:
        job = Job.fetch(job_id, connection=get_redis(decode=False, settings=settings))
    except (NoSuchJobError, ValueError):  # ValueError: not even a well-formed job id
        return None
    if tenant is not None and job.meta.get("tenant") != tenant:
        return None
    status = job.get_status()
    return {
        "id": job_id,
        "status": str(getattr(status, "value", status)),
        "result": job.return_value(),
        "meta": job.meta,
    }


def crm_import_job(tenant: str, upload_dir: str, options: dict) -> dict:
    """Import a spooled CRM upload, then delete the spool (raw ids must not linger on disk)."""
    folder = Path(upload_dir)
    try:
        holdings = folder / "holdings"
        return import_crm(
            get_redis(),
            tenant,
            folder / "customers",
            holdings if holdings.exists() else None,
            options=ImportOptions(**options),
        )
    except CrmImportError as err:
        return {**err.report, "status": "rejected", "problem": str(err)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
