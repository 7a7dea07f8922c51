"""Settings from the process environment: the one place that reads it.

Entry points (the CLI, ``offerwise serve``'s app factory, the worker and its jobs) call
``load_settings()`` once and hand the ``store.config.Settings`` down; code below ``app/`` never
reads the environment, so a test passes a ``Settings`` instead of setting variables. The
variables are listed in the README's configuration table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from store.config import Settings
from store.redis_client import StoreConfigError, is_cluster_url


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _redis_url(env: Mapping[str, str]) -> str | None:
    """``REDIS_URL``; with ``OFFERWISE_REDIS_CLUSTER=1`` a ``redis://`` URL names a cluster's
    seed node (the same as writing ``redis+cluster://``)."""
    url = env.get("REDIS_URL") or None
    if url and env.get("OFFERWISE_REDIS_CLUSTER", "").strip().lower() in ("1", "true", "yes"):
        scheme, sep, rest = url.partition("://")
        if scheme in ("redis", "rediss"):
            url = f"{scheme}+cluster{sep}{rest}"
    return url


def check(settings: Settings) -> Settings:
    """Refuse a combination that would fail later, at the first job: rq cannot use a cluster."""
    if is_cluster_url(settings.redis_url) and not settings.queue_redis_url:
        raise StoreConfigError(
            "REDIS_URL names a Redis Cluster, and the job queue (rq) cannot run on one: set "
            "OFFERWISE_QUEUE_REDIS_URL to a single Redis server for the queue (README, Configuration)"
        )
    if settings.wait_replicas < 0 or settings.wait_timeout_ms < 1:
        raise StoreConfigError(
            "OFFERWISE_REDIS_WAIT_REPLICAS must be 0 or more and OFFERWISE_REDIS_WAIT_TIMEOUT_MS "
            "at least 1"
        )
    return settings


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    defaults = Settings()
    return check(
        Settings(
            data_dir=_path(env.get("OFFERWISE_DATA_DIR", "./var")),
            redis_url=_redis_url(env),
            queue_redis_url=env.get("OFFERWISE_QUEUE_REDIS_URL") or None,
            wait_replicas=int(env.get("OFFERWISE_REDIS_WAIT_REPLICAS", defaults.wait_replicas)),
            wait_timeout_ms=int(
                env.get("OFFERWISE_REDIS_WAIT_TIMEOUT_MS", defaults.wait_timeout_ms)
            ),
            staff_token=env.get("OFFERWISE_STAFF_TOKEN") or None,
            metrics_token=env.get("OFFERWISE_METRICS_TOKEN") or None,
            geo_dir=_path(env["OFFERWISE_GEO_DIR"]) if env.get("OFFERWISE_GEO_DIR") else None,
            demographics_file=(
                _path(env["OFFERWISE_DEMOGRAPHICS"]) if env.get("OFFERWISE_DEMOGRAPHICS") else None
            ),
            demographics_joins=tuple(
                _path(part)
                for part in env.get("OFFERWISE_DEMOGRAPHICS_JOIN", "").split(os.pathsep)
                if part.strip()
            ),
            log_level=env.get("OFFERWISE_LOG_LEVEL", defaults.log_level),
            popularity_ttl=float(env.get("OFFERWISE_POPULARITY_TTL", defaults.popularity_ttl)),
            redis_fsync=env.get("OFFERWISE_REDIS_FSYNC", defaults.redis_fsync),
            redis_server=env.get("OFFERWISE_REDIS_SERVER") or None,
            small_cell_min=int(env.get("OFFERWISE_SMALL_CELL_MIN", defaults.small_cell_min)),
            storage_url=env.get("OFFERWISE_STORAGE_URL") or None,
            s3_endpoint_url=env.get("OFFERWISE_S3_ENDPOINT_URL") or None,
            s3_region=env.get("OFFERWISE_S3_REGION") or env.get("AWS_REGION") or None,
            dask_scheduler=env.get("OFFERWISE_DASK_SCHEDULER") or None,
            dask_min_rows=int(env.get("OFFERWISE_DASK_MIN_ROWS", defaults.dask_min_rows)),
            demo=env.get("OFFERWISE_DEMO") == "1",
        )
    )


def shared_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The public data (GeoNames, ZIP census tables) of the demo, tests and benchmarks; never
    copied into the repository (README, "Data")."""
    env = os.environ if environ is None else environ
    return _path(env.get("OFFERWISE_SHARED_DATA", "../shared/data"))
