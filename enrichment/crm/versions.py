"""Versioned CRM storage on disk, and the per-tenant lock that serialises imports and erasures.

``<crm_dir>/<tenant>/v<N>/`` holds ``customers.parquet``, ``holdings.parquet`` (when the import
had a holdings file) and ``manifest.json`` (the import report, content hash, columns). A version
is written under ``.v<N>.staging`` and renamed into place only when complete, so a listed version
is always whole. The newest versions are kept for rollback; older ones are pruned.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from redis.exceptions import LockError

from enrichment.crm.errors import CrmBusy, CrmError
from store import keys
from store.config import Settings

VERSION_RE = re.compile(r"^v(\d+)$")
STAGING_RE = re.compile(r"^\.v(\d+)\.staging$")
MANIFEST = "manifest.json"
CUSTOMERS = "customers.parquet"
HOLDINGS = "holdings.parquet"
DEFAULT_KEEP = 3
LOCK_TTL = 600  # seconds; renewed while an import makes progress


@dataclass(frozen=True)
class Version:
    number: int
    path: Path

    @property
    def name(self) -> str:
        return f"v{self.number}"

    def manifest(self) -> dict:
        try:
            return orjson.loads((self.path / MANIFEST).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}


def tenant_dir(settings: Settings, tenant: str) -> Path:
    if not keys.TENANT_NAME_RE.match(tenant or ""):
        raise CrmError(f"invalid tenant name {tenant!r}")
    return settings.crm_dir / tenant


def spool_dir(settings: Settings, tenant: str) -> Path:
    return tenant_dir(settings, tenant) / ".incoming"


def list_versions(settings: Settings, tenant: str) -> list[Version]:
    base = tenant_dir(settings, tenant)
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        m = VERSION_RE.match(child.name)
        if m and (child / MANIFEST).is_file():
            found.append(Version(int(m.group(1)), child))
    return sorted(found, key=lambda v: v.number)


def get_version(settings: Settings, tenant: str, name: str) -> Version:
    m = VERSION_RE.match(name.strip())
    if m:
        for v in list_versions(settings, tenant):
            if v.number == int(m.group(1)):
                return v
    raise CrmError(f"tenant {tenant!r} has no CRM version {name!r}")


def next_number(settings: Settings, tenant: str) -> int:
    base = tenant_dir(settings, tenant)
    numbers = [0]
    if base.is_dir():
        for child in base.iterdir():
            m = VERSION_RE.match(child.name) or STAGING_RE.match(child.name)
            if m:
                numbers.append(int(m.group(1)))
    return max(numbers) + 1


def staging_dir(settings: Settings, tenant: str, number: int) -> Path:
    path = tenant_dir(settings, tenant) / f".v{number}.staging"
    path.mkdir(parents=True, exist_ok=False)
    return path


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """zstd; dictionary pages only for text other than the (unique) customer hash, since
    dictionary-encoding unique values or floats costs time and space for nothing."""
    text = [f.name for f in schema if pa.types.is_string(f.type) and f.name != "customer_hash"]
    return pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=text)


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staging: Path, number: int) -> Version:
    for f in staging.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    final = staging.parent / f"v{number}"
    os.rename(staging, final)
    fsync_dir(staging.parent)
    return Version(number, final)


def remove_stale(settings: Settings, tenant: str) -> list[str]:
    """Staging folders and spooled uploads of interrupted imports (call with the lock held)."""
    base = tenant_dir(settings, tenant)
    removed = []
    if base.is_dir():
        for child in base.iterdir():
            if STAGING_RE.match(child.name):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
    incoming = spool_dir(settings, tenant)
    if incoming.is_dir():
        for f in incoming.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
    return removed


def prune(settings: Settings, tenant: str, keep: int, protect: set[str]) -> list[str]:
    """Delete all but the ``keep`` newest versions, never one named in ``protect``."""
    versions = list_versions(settings, tenant)
    doomed = [v for v in versions[: max(0, len(versions) - max(keep, 1))] if v.name not in protect]
    for v in doomed:
        shutil.rmtree(v.path, ignore_errors=True)
    return [v.name for v in doomed]


class TenantLock:
    """One CRM writer per tenant (import, rollback, erasure), across processes and hosts."""

    def __init__(self, r: redis.Redis, tenant: str, wait: float) -> None:
        self._lock = r.lock(
            keys.crm_lock(tenant),
            timeout=LOCK_TTL,
            blocking=wait > 0,
            blocking_timeout=wait or None,
        )
        self.tenant = tenant

    def renew(self) -> None:
        with contextlib.suppress(LockError):
            self._lock.reacquire()

    @contextlib.contextmanager
    def held(self) -> Iterator[TenantLock]:
        if not self._lock.acquire():
            raise CrmBusy(
                f"another CRM import, rollback or erasure is running for tenant {self.tenant!r}; try again shortly"
            )
        try:
            yield self
        finally:
            with contextlib.suppress(LockError):
                self._lock.release()


def tenant_lock(
    r: redis.Redis, tenant: str, wait: float = 0
) -> contextlib.AbstractContextManager[TenantLock]:
    return TenantLock(r, tenant, wait).held()
