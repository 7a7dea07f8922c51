"""Versioned CRM storage on disk, and the per-tenant lock that serialises imports and erasures.

``crm/<tenant>/v<N>/`` in the artifact store (``<crm_dir>/<tenant>/v<N>/`` on a local disk) holds
``customers.parquet``, ``holdings.parquet`` (when the import had a holdings file) and
``manifest.json`` (the import report, content hash, columns). A version is staged under
``.v<N>.staging`` and published only when complete, so a listed version is always whole. The
newest versions are kept for rollback; older ones are pruned.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from redis.exceptions import LockError

from enrichment.crm.errors import CrmBusy, CrmError
from store import keys
from store.artifacts import CRM, ArtifactStore, LocalArtifacts, Staged, artifacts_for, join_key
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
    store: ArtifactStore = field(repr=False, compare=False)
    key: str  # in the artifact store

    @property
    def path(self) -> Path:
        """A local folder with the version's files, for readers that need real files: the
        folder itself in the local store; with an object store, a cached copy fetched on first
        use (listing versions fetches nothing)."""
        return self.store.local_path(self.key)

    @property
    def name(self) -> str:
        return f"v{self.number}"

    def manifest(self) -> dict:
        try:
            return orjson.loads(self.store.read_bytes(join_key(self.key, MANIFEST)))
        except (OSError, orjson.JSONDecodeError):
            return {}


def artifact_prefix(tenant: str) -> str:
    if not keys.TENANT_NAME_RE.match(tenant or ""):
        raise CrmError(f"invalid tenant name {tenant!r}")
    return join_key(CRM, tenant)


def tenant_dir(settings: Settings, tenant: str) -> Path:
    return artifacts_for(settings).local_path(artifact_prefix(tenant))


def spool_dir(settings: Settings, tenant: str) -> Path:
    """Uploads being received: always a local folder (a hidden one beside the versions in the
    local store), whichever store keeps the versions."""
    return settings.crm_dir / artifact_prefix(tenant).split("/", 1)[1] / ".incoming"


def list_versions(settings: Settings, tenant: str) -> list[Version]:
    store, prefix = artifacts_for(settings), artifact_prefix(tenant)
    found = []
    for name in store.versions(prefix):
        m = VERSION_RE.match(name)
        key = join_key(prefix, name)
        if m and store.exists(join_key(key, MANIFEST)):
            found.append(Version(int(m.group(1)), store, key))
    return sorted(found, key=lambda v: v.number)


def get_version(settings: Settings, tenant: str, name: str) -> Version:
    m = VERSION_RE.match(name.strip())
    if m:
        for v in list_versions(settings, tenant):
            if v.number == int(m.group(1)):
                return v
    raise CrmError(f"tenant {tenant!r} has no CRM version {name!r}")


def next_number(settings: Settings, tenant: str) -> int:
    # Local staging folders hold numbers too, and only a directory scan sees them (listings skip
    # them); an object store stages in private temp folders and lists only versions.
    store, prefix = artifacts_for(settings), artifact_prefix(tenant)
    names = list(store.versions(prefix))
    if isinstance(store, LocalArtifacts):
        base = store.local_path(prefix)
        names += [child.name for child in base.iterdir()] if base.is_dir() else []
    numbers = [0]
    for name in names:
        m = VERSION_RE.match(name) or STAGING_RE.match(name)
        if m:
            numbers.append(int(m.group(1)))
    return max(numbers) + 1


def stage(settings: Settings, tenant: str, number: int) -> Staged:
    """An empty staging folder for version ``number`` (``.v<N>.staging``); publish() it."""
    return artifacts_for(settings).stage(artifact_prefix(tenant), f"v{number}")


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """zstd; dictionary pages only for text other than the (unique) customer hash, since
    dictionary-encoding unique values or floats costs time and space for nothing."""
    text = [f.name for f in schema if pa.types.is_string(f.type) and f.name != "customer_hash"]
    return pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=text)


def manifest_bytes(data: dict) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def write_manifest(settings: Settings, version: Version, data: dict) -> None:
    """Replace a published version's manifest (atomically, like every store write)."""
    artifacts_for(settings).write_bytes(join_key(version.key, MANIFEST), manifest_bytes(data))


def publish(settings: Settings, staged: Staged) -> Version:
    """Make a staged version visible, whole and durable, under its name ``v<N>``."""
    store = artifacts_for(settings)
    key = store.publish(staged)
    m = VERSION_RE.match(staged.name or "")
    assert m is not None, staged.name
    return Version(int(m.group(1)), store, key)


def remove_stale(settings: Settings, tenant: str) -> list[str]:
    """Staging folders and spooled uploads of interrupted imports (call with the lock held)."""
    removed = artifacts_for(settings).clean_staging(artifact_prefix(tenant))
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
    store = artifacts_for(settings)
    for v in doomed:
        with contextlib.suppress(OSError):  # a version left behind costs disk, not correctness
            store.delete(v.key)
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
