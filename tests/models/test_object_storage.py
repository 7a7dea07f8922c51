"""Issue 15 item 2 end to end on an S3-compatible object store (moto in server mode, started by
the test session): events archived into the bucket, a CRM extract imported into it, a model
trained from both and published into it, then served from a local cache of the published
version; nothing of the archive, the CRM versions or the artifacts is left on the local disk,
and a Dask cluster's workers read the same archive from the bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream.archiver import Archiver, erase_events, read_archive
from models.bundle import SCORE_CUTS_FILE
from models.pipeline import train_and_register
from models.synthetic import SyntheticConfig, generate, install
from models.training import TrainParams
from store.artifacts import ArtifactStore, artifacts_for, events_store
from store.artifacts.s3 import S3Artifacts
from store.config import Settings
from tests.helpers import free_port, wait_until_ok
from tests.object_store import AWS_ENV, REGION, make_bucket
from tests.synth_world import World, base_artifacts, recommend_identified

# A short history keeps the archive to a few dozen day partitions: every file is a few requests
# to the local S3 server.
CONFIG = SyntheticConfig(
    customers=1500, products=3, dead_products=0, web_share=0.5, days=30, label_days=10, seed=3
)
TENANT = "cloud"


def upload_tree(store: ArtifactStore, local: Path, prefix: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(local).parts):
            store.write_bytes(f"{prefix}/{path.relative_to(local)}", path.read_bytes())


# Module fixtures train (and start a cluster or a server) once; on a loaded 2-core machine one
# of them outlasted the suite's default 300 s per test.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def world(redis_server, s3_server, shared_data, geo_dir, tmp_path_factory) -> Iterator[World]:
    import redis

    tmp = tmp_path_factory.mktemp("s3world")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        make_bucket(s3_server, "offerwise-e2e")
        settings = Settings(
            data_dir=tmp / "var",
            geo_dir=geo_dir,
            storage_url="s3://offerwise-e2e/prod",
            s3_endpoint_url=s3_server,
            s3_region=REGION,
        )
        # Demographics and segments, built once per test process, uploaded as published.
        base = base_artifacts(shared_data, geo_dir, tmp.parent)
        upload_tree(artifacts_for(settings), base / "artifacts", "artifacts")
        r = redis.Redis.from_url(redis_server)
        r.flushall()
        data = generate(CONFIG, settings)
        report = install(r, settings, TENANT, data)
        yield World(settings, r, redis_server, TENANT, data, report)


@pytest.fixture(scope="module")
def trained(world) -> dict:
    return train_and_register(
        world.r, world.settings, world.tenant, params=TrainParams(max_rounds=40, early_stopping=10)
    )


def test_the_archive_and_crm_versions_live_in_the_bucket(world) -> None:
    store = artifacts_for(world.settings)
    assert isinstance(store, S3Artifacts)
    assert world.report["archived"] == world.report["events"] > 1000
    dates = [d for d in store.list_names(f"events/{TENANT}") if d != "_staging"]
    assert dates and all(d.startswith("date=") for d in dates)
    assert store.versions(f"crm/{TENANT}") == ["v1"]
    assert store.exists(f"crm/{TENANT}/v1/customers.parquet")
    table = read_archive(events_store(world.settings), TENANT)
    assert table.num_rows == world.report["events"]
    # Only caches and spools on the local disk: no archive, no CRM version, no artifact.
    data_dir = world.settings.data_dir
    assert not (data_dir / "events").exists() and not (data_dir / "artifacts").exists()
    assert not list((data_dir / "crm").rglob("*.parquet")) if (data_dir / "crm").exists() else True


def test_train_publishes_into_the_bucket_and_serves_from_a_local_cache(world, trained) -> None:
    assert trained["registry"]["promoted"] is True
    store = artifacts_for(world.settings)
    key = f"artifacts/models/{TENANT}/{trained['version']}"
    assert store.versions(f"artifacts/models/{TENANT}") == [trained["version"]]
    for name in ("result.json", "scorer.npz", "schema.json", SCORE_CUTS_FILE, "drift.json",
                 "lineage.bloom"):  # fmt: skip
        assert store.exists(f"{key}/{name}"), name
    assert trained["summary"]["snapshot"]["events"] == world.report["events"]
    out = recommend_identified(world, "s3-1")
    assert out["source"] == f"model:{trained['version']}" and out["offers"]
    cached = world.settings.cache_dir / "objects" / key
    assert (cached / "scorer.npz").is_file()  # the scorer was read from the local cache


def test_a_second_node_with_an_empty_disk_serves_the_model_from_the_bucket(
    world, trained, tmp_path
) -> None:
    """A real ``offerwise serve`` on a fresh data dir: everything it needs is in Redis and
    the bucket; it fetches the published version into its own cache."""
    import requests

    from store.tenants import rotate_keys

    node = tmp_path / "node2"
    s = world.settings
    env = {**os.environ, **AWS_ENV, "REDIS_URL": world.url, "OFFERWISE_DATA_DIR": str(node),
           "OFFERWISE_GEO_DIR": str(s.geo_dir), "OFFERWISE_STORAGE_URL": str(s.storage_url),
           "OFFERWISE_S3_ENDPOINT_URL": str(s.s3_endpoint_url)}  # fmt: skip
    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "1"],
            cwd=Path(__file__).resolve().parents[2], env=env, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{base}/readyz", proc, timeout=120)
        site = rotate_keys(world.r, world.tenant)["site_key"]
        headers = {"Origin": "https://shop.example"}
        ts = int(world.data.end_time * 1000) - 1000
        buyer = next(i for i, held in enumerate(world.data.holds) if not held.all())
        identify = {"id": "n2", "type": "identify", "ts": ts,
                    "customer_id": world.data.customer_ids[buyer]}  # fmt: skip
        res = requests.post(f"{base}/v1/collect", headers=headers, timeout=30,
                            json={"site": site, "visitor": "node2-v", "events": [identify]})  # fmt: skip
        assert res.status_code == 200, res.text
        out = requests.get(f"{base}/v1/recommend", headers=headers, timeout=30,
                           params={"site": site, "visitor": "node2-v", "n": 3}).json()  # fmt: skip
        assert out["source"] == f"model:{trained['version']}" and out["offers"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    key = f"artifacts/models/{TENANT}/{trained['version']}"
    assert (node / "cache" / "objects" / key / "scorer.npz").is_file()
    assert not (node / "artifacts").exists() and not (node / "events").exists()


def test_dask_workers_read_the_archive_from_the_bucket(world) -> None:
    from distributed import Client, LocalCluster

    from models.training.distributed import DaskEngine
    from models.web_history import load_events

    store = events_store(world.settings)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():  # what the workers' AWS SDK reads
            mp.setenv(name, value)
        with (
            LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,  # fmt: skip
            Client(cluster) as client,
        ):
            got = DaskEngine(client).load_events(store, TENANT)
    want = load_events(store, TENANT)
    assert len(got) == len(want) == world.report["events"]
    assert got["visitor"].tolist() == want["visitor"].tolist()


def test_erasure_and_a_second_archive_run_on_the_bucket(world, trained) -> None:
    store = events_store(world.settings)
    victim = read_archive(store, TENANT, columns=["visitor"])["visitor"][0].as_py()
    out = erase_events(world.r, store, TENANT, visitor_ids=[victim])
    assert out["archive_rows"] > 0
    assert victim not in set(
        read_archive(store, TENANT, columns=["visitor"])["visitor"].to_pylist()
    )
    before = read_archive(store, TENANT).num_rows
    again = Archiver(world.r, store).archive_tenant(TENANT)  # what collect added since
    assert again.pending == 0 and not again.recovered
    assert read_archive(store, TENANT).num_rows == before + again.events
    assert store.list_names(f"{TENANT}/_staging") == []
