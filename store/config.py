"""Runtime settings, read once from the environment.

Every path is configurable so that the same code runs from a checkout, a container or a test
session; nothing here names a machine path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _path(name: str, default: str) -> Path:
    return Path(os.environ.get(name, default)).expanduser().resolve()


def _optional_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: _path("OFFERWISE_DATA_DIR", "./var"))
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    staff_token: str | None = field(
        default_factory=lambda: os.environ.get("OFFERWISE_STAFF_TOKEN") or None
    )
    # Unlocks the per-tenant series of /metrics (tenant names and counts); see README "Metrics".
    metrics_token: str | None = field(
        default_factory=lambda: os.environ.get("OFFERWISE_METRICS_TOKEN") or None
    )
    # GeoNames postal-code files in pgeocode's cache format (XX.txt); see README.
    geo_dir: Path | None = field(default_factory=lambda: _optional_path("OFFERWISE_GEO_DIR"))
    # ZIP-keyed census table loaded by `offerwise geo load-demographics`.
    demographics_file: Path | None = field(
        default_factory=lambda: _optional_path("OFFERWISE_DEMOGRAPHICS")
    )
    log_level: str = field(default_factory=lambda: os.environ.get("OFFERWISE_LOG_LEVEL", "INFO"))
    # How stale the per-process popularity snapshot may be (seconds; 0 reads Redis every time).
    # Popularity decays over hours, so a second of staleness changes no ranking a visitor sees.
    popularity_ttl: float = field(
        default_factory=lambda: float(os.environ.get("OFFERWISE_POPULARITY_TTL", "1.0"))
    )

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
    def metrics_dir(self) -> Path:
        return self.data_dir / "metrics"


def load_settings() -> Settings:
    return Settings()
