"""Runtime settings: one frozen object handed down from the entry points.

Nothing here reads the environment: ``app.settings.load_settings`` does, once, and every layer
below ``app/`` receives the result, so a test passes a ``Settings`` instead of setting variables.
Every path is configurable so that the same code runs from a checkout, a container or a test
session; nothing here names a machine path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    # Embedded Redis files, Parquet archive, CRM versions, model artifacts, metrics.
    data_dir: Path = field(default_factory=lambda: Path("var").resolve())
    # An external Redis; None starts (or joins) the embedded server in data_dir. A Redis Cluster
    # is named ``redis+cluster://host:port`` (store.redis_client).
    redis_url: str | None = None
    # The job queue's Redis (rq cannot use a cluster); None: the store's own server.
    queue_redis_url: str | None = None
    # Collect answers 200 only once this many replicas have the batch's writes (Redis WAIT),
    # so a failover to a replica loses no acknowledged event; 0: do not wait (README,
    # Durability). After wait_timeout_ms without enough replicas the answer is a 503.
    wait_replicas: int = 0
    wait_timeout_ms: int = 500
    staff_token: str | None = None
    # Unlocks the per-tenant series of /metrics (tenant names and counts); see README "Metrics".
    metrics_token: str | None = None
    # GeoNames postal-code files in pgeocode's cache format (XX.txt); see README.
    geo_dir: Path | None = None
    # ZIP-keyed census table loaded by `offerwise geo load-demographics`, and further ZIP-keyed
    # tables joined onto it by ZIP (ACS median household income).
    demographics_file: Path | None = None
    demographics_joins: tuple[Path, ...] = ()
    log_level: str = "INFO"
    # How stale the per-process popularity snapshot may be (seconds; 0 reads Redis every time).
    # Popularity decays over hours, so a second of staleness changes no ranking a visitor sees.
    popularity_ttl: float = 1.0
    # The embedded Redis: its append-only fsync policy ("always" loses no acknowledged write
    # on a host crash, "everysec" up to a second) and an explicit redis-server binary.
    redis_fsync: str = "everysec"
    redis_server: str | None = None
    # A ZCTA with fewer residents is a small cell: its own figures are not served (privacy, and
    # ratios over a handful of people are noise).
    small_cell_min: int = 100
    # Where the archive, CRM versions and artifacts live: None is the data dir; an
    # ``s3://bucket/prefix`` URL an S3-compatible object store (store.artifacts.s3), at
    # ``s3_endpoint_url`` when not AWS itself. Credentials: the AWS SDK's standard chain.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # Distributed training (models.training.distributed): tenants with at least
    # ``dask_min_rows`` training rows train on the Dask cluster at ``dask_scheduler``.
    dask_scheduler: str | None = None
    dask_min_rows: int = 1_000_000
    # The demo shop's pages (/demo/) are served: `offerwise demo` sets it (OFFERWISE_DEMO=1).
    demo: bool = False

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def events_dir(self) -> Path:
        return self.data_dir / "events"

    @property
    def crm_dir(self) -> Path:
        return self.data_dir / "crm"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def cache_dir(self) -> Path:
        """Local copies of object-store files that readers need as real files."""
        return self.data_dir / "cache"

    @property
    def metrics_dir(self) -> Path:
        return self.data_dir / "metrics"
