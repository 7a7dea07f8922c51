"""Erasure of customers from the CRM side: live serving profiles and every kept version.

The customer's hash also goes on the tenant's suppression list, so that a later import of an
extract that still holds them (or a rollback to a version written before the erasure) does not
bring them back. Parquet files are rewritten through the artifact store's atomic write, so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from enrichment.crm import serving
from enrichment.crm.errors import CrmError
from enrichment.crm.live import cleanup_orphans
from enrichment.crm.versions import (
    CUSTOMERS,
    HOLDINGS,
    list_versions,
    parquet_writer,
    tenant_lock,
    write_manifest,
)
from store.artifacts import ArtifactStore, artifacts_for, join_key
from store.config import Settings

ERASE_LOCK_WAIT = 600.0  # an erasure waits for a running import rather than fail
REWRITE_BATCH = 64 * 1024


class ErasureReceipt(TypedDict):
    """What ``erase_customers`` removed."""

    tenant: str
    customers: int
    serving_profiles_removed: int
    customer_rows_removed: int
    holding_rows_removed: int
    versions_rewritten: list[str]
    suppressed: bool


def _count(pf: pq.ParquetFile, hashes: pa.Array) -> int:
    total = 0
    for batch in pf.iter_batches(batch_size=REWRITE_BATCH, columns=["customer_hash"]):
        total += int(pc.sum(pc.is_in(batch.column(0), value_set=hashes)).as_py() or 0)
    return total


def rewrite_without(store: ArtifactStore, key: str, hashes: pa.Array) -> int:
    """Rows of ``hashes`` removed from a Parquet file (atomic rewrite); returns how many."""
    if not store.exists(key):
        return 0
    with store.open(key) as fh:
        pf = pq.ParquetFile(fh)
        found = _count(pf, hashes)
        if not found:
            return 0

        def write(tmp: Path) -> None:
            with parquet_writer(tmp, pf.schema_arrow) as out:
                for batch in pf.iter_batches(batch_size=REWRITE_BATCH):
                    keep = pc.invert(pc.is_in(batch.column("customer_hash"), value_set=hashes))
                    out.write_batch(batch.filter(keep))

        store.write_file(key, write)
    return found


def erase_customers(
    r: redis.Redis,
    settings: Settings,
    tenant: str,
    customer_hashes: Iterable[str],
    lock_wait: float = ERASE_LOCK_WAIT,
) -> ErasureReceipt:
    """Remove customers (by keyed hash) from serving and from every kept CRM version."""
    hashes = sorted({h.strip().lower() for h in customer_hashes})
    bad = [h for h in hashes if not serving.HASH_RE.match(h)]
    if bad:
        raise CrmError(f"not a customer hash (32 hex digits): {bad[0]!r}")
    receipt: ErasureReceipt = {
        "tenant": tenant,
        "customers": len(hashes),
        "serving_profiles_removed": 0,
        "customer_rows_removed": 0,
        "holding_rows_removed": 0,
        "versions_rewritten": [],
        "suppressed": bool(hashes),
    }
    if not hashes:
        return receipt
    values = pa.array(hashes, pa.string())
    store = artifacts_for(settings)
    with tenant_lock(r, tenant, lock_wait) as lock:
        r.sadd(serving.erased_key(tenant), *hashes)
        cleanup_orphans(r, settings, tenant)
        for h in hashes:
            receipt["serving_profiles_removed"] += serving.remove_customer(r, tenant, h)
        for version in list_versions(settings, tenant):
            customers = rewrite_without(store, join_key(version.key, CUSTOMERS), values)
            holdings = rewrite_without(store, join_key(version.key, HOLDINGS), values)
            lock.renew()
            if customers or holdings:
                manifest = version.manifest()
                manifest["erased_rows"] = manifest.get("erased_rows", 0) + customers
                write_manifest(settings, version, manifest)
                receipt["versions_rewritten"].append(version.name)
                receipt["customer_rows_removed"] += customers
                receipt["holding_rows_removed"] += holdings
    return receipt


def erase_customer(
    r: redis.Redis, settings: Settings, tenant: str, customer_hash: str
) -> ErasureReceipt:
    """Erase one customer (see ``erase_customers``); returns the receipt with counts."""
    return erase_customers(r, settings, tenant, [customer_hash])
