"""Which CRM version serves: listing, re-activation of a kept version, and rollback.

The serving profiles of a version exist in Redis only while it is live; switching to a kept
version reloads its Parquet files into a fresh namespace, flips the pointer, then drops the old
namespace. Every change runs under the tenant's CRM lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from enrichment.crm import serving
from enrichment.crm.errors import CrmError, CrmNothingToRollBack
from enrichment.crm.holdings import build_profiles
from enrichment.crm.versions import (
    CUSTOMERS,
    HOLDINGS,
    TenantLock,
    Version,
    get_version,
    list_versions,
    remove_stale,
    tenant_lock,
)
from store.config import Settings

READ_BATCH = 128 * 1024


def erased_hashes(r: redis.Redis, tenant: str) -> set[str]:
    return {
        m.decode() if isinstance(m, bytes) else m for m in r.smembers(serving.erased_key(tenant))
    }


def cleanup_orphans(r: redis.Redis, settings: Settings, tenant: str) -> None:
    """Leftovers of interrupted work: staging folders, spooled uploads, namespaces not live."""
    remove_stale(settings, tenant)
    live = serving.live_serving_id(r, tenant)
    for sid in serving.namespaces(r, tenant):
        if sid != live:
            serving.drop_namespace(r, tenant, sid)


def _without(table_or_batch: pa.Table | pa.RecordBatch, erased: pa.Array | None):
    if erased is None or len(erased) == 0:
        return table_or_batch
    return table_or_batch.filter(
        pc.invert(pc.is_in(table_or_batch["customer_hash"], value_set=erased))
    )


@dataclass(frozen=True)
class Loaded:
    sid: str
    customers: int
    customers_with_holdings: int


def load_serving(
    r: redis.Redis,
    tenant: str,
    folder: Path,
    version: str,
    manifest: dict,
    lock: TenantLock | None = None,
) -> Loaded:
    """Serving profiles of a version folder in a new namespace (not yet live)."""
    attributes = manifest.get("attributes")
    if attributes is None:
        raise CrmError(f"CRM version {version} of tenant {tenant!r} has no readable manifest")
    erased_set = erased_hashes(r, tenant)
    erased = pa.array(sorted(erased_set), pa.string()) if erased_set else None
    profiles = None
    if (folder / HOLDINGS).is_file():
        profiles = build_profiles(_without(pq.read_table(folder / HOLDINGS), erased))
        pa.default_memory_pool().release_unused()
    sid = serving.new_serving_id(version)
    writer = serving.ServingWriter(r, tenant, sid, attributes, profiles)
    try:
        for batch in pq.ParquetFile(folder / CUSTOMERS).iter_batches(batch_size=READ_BATCH):
            writer.add(_without(batch, erased))
            if lock is not None:
                lock.renew()
        writer.finish(version, manifest.get("types", {}))
    except BaseException:
        writer.close()  # no write may land after the namespace is dropped
        serving.drop_namespace(r, tenant, sid)
        raise
    return Loaded(sid, writer.written, profiles.num_rows if profiles is not None else 0)


def _switch(
    r: redis.Redis, settings: Settings, tenant: str, target: Version, lock: TenantLock, action: str
) -> dict:
    started = time.monotonic()
    sid = load_serving(r, tenant, target.path, target.name, target.manifest(), lock).sid
    previous = serving.go_live(r, tenant, sid)
    if previous and previous != sid:
        serving.drop_namespace(r, tenant, previous)
    return {
        "tenant": tenant,
        "status": action,
        "live_version": target.name,
        "previous_version": serving.version_of(previous),
        "customers": target.manifest().get("rows_imported"),
        "seconds": round(time.monotonic() - started, 3),
    }


def activate(
    r: redis.Redis,
    tenant: str,
    version: str,
    settings: Settings,
    lock_wait: float = 0,
) -> dict:
    """Make a kept version live (also restores serving after Redis lost its data)."""
    with tenant_lock(r, tenant, lock_wait) as lock:
        cleanup_orphans(r, settings, tenant)
        return _switch(
            r, settings, tenant, get_version(settings, tenant, version), lock, "activated"
        )


def rollback(r: redis.Redis, tenant: str, settings: Settings, lock_wait: float = 0) -> dict:
    """Go back to the newest kept version older than the live one."""
    with tenant_lock(r, tenant, lock_wait) as lock:
        cleanup_orphans(r, settings, tenant)
        live = serving.current_version(r, tenant)
        if live is None:
            raise CrmNothingToRollBack(
                f"tenant {tenant!r} has no live CRM version to roll back from"
            )
        live_number = int(live[1:])
        older = [v for v in list_versions(settings, tenant) if v.number < live_number]
        if not older:
            raise CrmNothingToRollBack(
                f"tenant {tenant!r} has no CRM version older than {live} to roll back to"
            )
        return _switch(r, settings, tenant, older[-1], lock, "rolled back")


def versions_info(r: redis.Redis, tenant: str, settings: Settings) -> dict:
    """Kept versions, newest first, with which one is live."""
    live = serving.current_version(r, tenant)
    out = []
    for v in reversed(list_versions(settings, tenant)):
        m = v.manifest()
        out.append(
            {
                "version": v.name,
                "live": v.name == live,
                "created_at": m.get("created_at"),
                "source": (m.get("source") or {}).get("name"),
                "rows_imported": m.get("rows_imported"),
                "rows_rejected": m.get("rows_rejected"),
                "holdings_rows": (m.get("holdings") or {}).get("rows_imported"),
                "columns": len(m.get("attributes") or []),
                "content_hash": m.get("content_hash"),
                "erased_rows": m.get("erased_rows", 0),
            }
        )
    return {"tenant": tenant, "live_version": live, "versions": out}
