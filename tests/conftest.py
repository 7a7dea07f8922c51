"""Shared fixtures: a real redis-server per test session on a free port, never a fake."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from store.embedded import find_redis_server
from tests.helpers import free_port
from tests.object_store import s3_server, s3_url  # noqa: F401  (fixtures for every package)

SHARED_DATA = Path(
    os.environ.get(
        "OFFERWISE_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server for the whole session; yields its URL."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


STAFF_TOKEN = "staff-secret-token"
METRICS_TOKEN = "metrics-secret-token"


@pytest.fixture
def redis_url(redis_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A clean database on the session server. The environment is set too, for what runs in
    other processes (CLI commands, the worker's spawned jobs, servers); code in this process
    gets the ``settings`` fixture."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    monkeypatch.setenv("REDIS_URL", redis_server)
    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OFFERWISE_STAFF_TOKEN", STAFF_TOKEN)
    monkeypatch.setenv("OFFERWISE_METRICS_TOKEN", METRICS_TOKEN)
    from store.redis_client import reset_clients

    reset_clients()
    yield redis_server
    reset_clients()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path):
    """The settings of this test's service, passed explicitly (as entry points hand them down)."""
    from store.config import Settings

    return Settings(
        data_dir=tmp_path / "var",
        redis_url=redis_url,
        staff_token=STAFF_TOKEN,
        metrics_token=METRICS_TOKEN,
    )


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "zcta_demographics.csv").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}; set OFFERWISE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def geo_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the GeoNames files (pgeocode writes index files beside them)."""
    target = tmp_path_factory.mktemp("geonames")
    for f in (shared_data / "geonames").glob("*.txt"):
        shutil.copy(f, target / f.name)
    return target


@pytest.fixture
def app(settings):
    from app import create_app

    application = create_app(settings)
    application.testing = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def acme(r: redis.Redis) -> dict:
    """A tenant with one allowed origin and a generous rate limit."""
    from store.tenants import create_tenant

    return create_tenant(r, "acme", ["https://shop.example"], rate_limit=10_000)


@pytest.fixture
def acme_catalog(r: redis.Redis, acme: dict) -> list[dict]:
    from clickstream import catalog

    products = [
        {"product_id": f"p{i}", "name": f"Product {i}", "category": ["shoes", "bags", "hats"][i % 3],
         "price": 10.0 + i, "margin": 2.0 + i % 5, "url": f"https://shop.example/p{i}", "image_url": None,
         "active": i != 11}
        for i in range(12)
    ]  # fmt: skip
    catalog.replace_catalog(r, "acme", products)
    return products
