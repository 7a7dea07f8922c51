"""Background jobs started from the API (run by ``offerwise worker``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from enrichment.crm import CrmImportError, ImportOptions, import_crm
from store.redis_client import get_redis


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
