"""Shared by the model tests: a data dir with the real ZIP demographics and segments, and a
synthetic tenant installed for real (catalog, CRM import, ingest, archive) on the session Redis.

Loading the ZCTA table and clustering segments takes seconds, so it is done once per test
process into a base folder that each world copies. A world owns the whole Redis server while
its module runs: modules that use it must not use the ``r``/``redis_url`` fixtures (they flush).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import redis

from models.synthetic import SyntheticConfig, SyntheticTenant, generate, install
from store.config import Settings
from store.redis_client import client_for_url

SEGMENTS_K = 10
_base: dict[str, Path] = {}


@dataclass
class World:
    settings: Settings
    r: redis.Redis
    url: str
    tenant: str
    data: SyntheticTenant
    report: dict


def base_artifacts(shared_data: Path, geo_dir: Path, root: Path) -> Path:
    """A data dir with demographics and segments loaded (built once per process)."""
    if "dir" not in _base:
        from enrichment.demographics import load_demographics
        from enrichment.segments import build_segments

        data_dir = root / "base-var"
        s = Settings(data_dir=data_dir, geo_dir=geo_dir)
        load_demographics(shared_data / "zcta_demographics.csv", s)
        build_segments(s, k=SEGMENTS_K, seed=0)
        _base["dir"] = data_dir
    return _base["dir"]


def make_world(
    redis_server: str,
    shared_data: Path,
    geo_dir: Path,
    tmp: Path,
    config: SyntheticConfig,
    tenant: str = "synth",
    edit: Callable[[SyntheticTenant], None] | None = None,
) -> World:
    """``edit`` changes the generated data before it is installed (an extra CRM column...)."""
    base = base_artifacts(shared_data, geo_dir, tmp.parent)
    data_dir = tmp / "var"
    shutil.copytree(base / "artifacts", data_dir / "artifacts")
    settings = Settings(data_dir=data_dir, geo_dir=geo_dir)
    r = client_for_url(redis_server)  # one server, or a cluster (redis+cluster://)
    r.flushall()
    data = generate(config, settings)
    if edit is not None:
        edit(data)
    report = install(r, settings, tenant, data)
    return World(settings, r, redis_server, tenant, data, report)


def recommend_identified(world: World, visitor: str) -> dict:
    """``GET /v1/recommend`` (n=3) from a fresh app for ``visitor`` once it has identified as a
    customer who does not hold every product (so the model has something to offer)."""
    from app import create_app
    from store.redis_client import reset_clients
    from store.tenants import rotate_keys

    reset_clients()
    client = create_app(replace(world.settings, redis_url=world.url)).test_client()
    site = rotate_keys(world.r, world.tenant)["site_key"]
    buyer = next(i for i, held in enumerate(world.data.holds) if not held.all())
    identify = {
        "id": "i1",
        "type": "identify",
        "ts": int(world.data.end_time * 1000) - 1000,
        "customer_id": world.data.customer_ids[buyer],
    }
    res = client.post("/v1/collect", json={"site": site, "visitor": visitor, "events": [identify]})
    assert res.status_code == 200, res.json
    out = client.get(f"/v1/recommend?site={site}&visitor={visitor}&n=3").json
    reset_clients()
    return out
