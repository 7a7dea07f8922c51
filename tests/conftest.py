"""Shared fixtures: a real redis-server per test session on a free port, never a fake.

With ``--redis-cluster`` (``make test-cluster``) the store is a local Redis Cluster instead
(3 masters, 3 replicas, ``bench/local_cluster.py``) started once for the session, and the single
server holds only the job queue, as in a cluster deployment (rq cannot use a cluster). Tests
marked ``single_redis`` need one server's view (its Unix socket, its embedded life cycle,
client kills) and are skipped there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from bench.local_cluster import LocalCluster
from store.embedded import find_redis_server
from store.openmp import passive_waits
from store.redis_client import cluster_client
from tests.helpers import free_port
from tests.object_store import s3_server, s3_url  # noqa: F401  (fixtures for every package)

# Before any test module imports xgboost itself (none of the imports above does); the servers
# and commands the tests start inherit it (store/openmp.py says why).
passive_waits()

SHARED_DATA = Path(
    os.environ.get(
        "OFFERWISE_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
).resolve()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-cluster",
        action="store_true",
        help="run against a local 3-master, 3-replica Redis Cluster (make test-cluster)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    on_cluster = config.getoption("--redis-cluster")
    single = pytest.mark.skip(reason="needs a single Redis server (skipped with --redis-cluster)")
    cluster = pytest.mark.skip(reason="needs --redis-cluster (make test-cluster)")
    for item in items:
        if on_cluster and item.get_closest_marker("single_redis"):
            item.add_marker(single)
        if not on_cluster and item.get_closest_marker("cluster"):
            item.add_marker(cluster)
    if hasattr(config, "workerinput"):  # an xdist worker: its collection's order is the run's
        # With xdist (`make test`: -n 2 --dist loadfile, each file whole in one worker, as its
        # module fixtures and synthetic worlds expect) the system tests first: they are the
        # long files (up to minutes each), and each worker takes the next file when it is
        # done, so long files last would leave one worker running them alone at the end.
        items.sort(key=lambda item: not item.nodeid.startswith("tests/system/"))


@pytest.fixture(scope="session")
def redis_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster | None]:
    """The session's local Redis Cluster with ``--redis-cluster``, else None."""
    if not request.config.getoption("--redis-cluster"):
        yield None
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


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
def redis_url(
    redis_server: str,
    redis_cluster: LocalCluster | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[str]:
    """A clean database on the session server (or cluster). The environment is set too, for
    what runs in other processes (CLI commands, the worker's spawned jobs, servers); code in
    this process gets the ``settings`` fixture."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    url = redis_server
    if redis_cluster is not None:
        redis_cluster.wait_ok()  # a failover test may have just moved masters
        redis_cluster.flush()
        url = redis_cluster.url
        monkeypatch.setenv("OFFERWISE_QUEUE_REDIS_URL", redis_server)
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OFFERWISE_STAFF_TOKEN", STAFF_TOKEN)
    monkeypatch.setenv("OFFERWISE_METRICS_TOKEN", METRICS_TOKEN)
    from store.redis_client import reset_clients

    reset_clients()
    yield url
    reset_clients()


@pytest.fixture
def settings(redis_url: str, redis_server: str, tmp_path: Path):
    """The settings of this test's service, passed explicitly (as entry points hand them down)."""
    from store.config import Settings
    from store.redis_client import is_cluster_url

    return Settings(
        data_dir=tmp_path / "var",
        redis_url=redis_url,
        queue_redis_url=redis_server if is_cluster_url(redis_url) else None,
        staff_token=STAFF_TOKEN,
        metrics_token=METRICS_TOKEN,
    )


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    """A client of the test's store: one server's, or the cluster's (``RedisCluster``)."""
    if redis_url.startswith("redis+cluster://"):
        return cluster_client(redis_url, ClusterForTests)  # type: ignore[return-value]
    return redis.Redis.from_url(redis_url)


class ClusterForTests(RedisCluster):
    """The cluster client, but KEYS asks every master (redis-py asks one node by default), so
    that a test looking for what was stored sees all of it."""

    def keys(self, pattern="*", **kwargs):  # type: ignore[override]
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return super().keys(pattern, **kwargs)


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
