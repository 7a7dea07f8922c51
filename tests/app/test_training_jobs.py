"""Training through a real rq worker: the job reports its stage and product k of N in its
meta while it runs, the job API and ``offerwise jobs show`` show it, and a training that
cannot train anything is a failed job with the reason, not a finished one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from app import create_app
from app.cli import cli
from app.jobs import enqueue, job_status, train_job
from app.worker import run_worker
from models import registry
from models.synthetic import SyntheticConfig
from store.redis_client import get_redis, reset_clients
from tests.synth_world import World, make_world

CONFIG = SyntheticConfig(customers=1500, products=3, dead_products=0, web_share=0.4, seed=5)
# Few positives: training cross-validates; one repeat of three folds keeps the test short.
QUICK = {"cv_repeats": 1, "cv_folds": 3, "baselines": ("logistic",)}
STAFF = {"Authorization": "Bearer staff"}


@pytest.fixture(scope="module")
def world(redis_server, shared_data, geo_dir, tmp_path_factory) -> World:
    return make_world(redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("jobs"), CONFIG)


@pytest.fixture
def env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The worker's spawned jobs and the CLI read the environment: point it at the world."""
    monkeypatch.setenv("REDIS_URL", world.url)
    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(world.settings.data_dir))
    monkeypatch.setenv("OFFERWISE_GEO_DIR", str(world.settings.geo_dir))
    monkeypatch.setenv("OFFERWISE_STAFF_TOKEN", "staff")
    reset_clients()
    yield world
    reset_clients()


def _settings(world: World):
    from dataclasses import replace

    return replace(world.settings, redis_url=world.url, staff_token="staff")


def test_training_job_reports_progress_and_registers(env: World) -> None:
    settings = _settings(env)
    client = create_app(settings).test_client()
    conn = get_redis(settings, decode=False)
    job_id = enqueue(conn, train_job, env.tenant, None, "holdings", QUICK,
                     meta={"tenant": env.tenant, "kind": "train"})  # fmt: skip
    seen: list[dict] = []
    stop = threading.Event()

    def watch() -> None:  # what a staff member polling the job API sees while it runs
        while not stop.is_set():
            progress = job_status(conn, job_id)["meta"].get("progress")
            if progress and (not seen or seen[-1] != progress):
                seen.append(progress)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_worker(settings, burst=True)
    finally:
        stop.set()
        watcher.join()
    status = client.get(f"/v1/staff/jobs/{job_id}", headers=STAFF).json
    assert status["status"] == "finished", status
    assert status["error"] is None
    assert status["result"]["version"] == registry.champion(env.r, env.tenant)
    assert status["meta"]["progress"] == {**status["meta"]["progress"], "stage": "done"}
    stages = [p["stage"] for p in seen]
    # Watched live: some stage of the training itself, with k of N products.
    training = [p for p in seen if p["stage"].startswith("training ")]
    assert training, stages
    assert all(p["total"] == len(CONFIG_PRODUCTS(env)) for p in training)
    assert all(0 <= p["done"] < p["total"] for p in training)

    shown = CliRunner().invoke(cli, ["jobs", "show", job_id])
    assert shown.exit_code == 0, shown.output
    out = json.loads(shown.stdout)
    assert out["status"] == "finished" and out["meta"]["kind"] == "train"


def CONFIG_PRODUCTS(world: World) -> list[str]:
    return [p["product_id"] for p in world.data.catalog]


def test_a_training_that_cannot_train_is_a_failed_job_with_the_reason(env: World) -> None:
    settings = _settings(env)
    client = create_app(settings).test_client()
    queued = client.post(
        f"/v1/staff/tenants/{env.tenant}/train", json={"products": ["nosuch"]}, headers=STAFF
    )
    job_id = queued.json["job"]
    run_worker(settings, burst=True)
    status = client.get(f"/v1/staff/jobs/{job_id}", headers=STAFF).json
    assert status["status"] == "failed"
    assert "could be trained" in status["error"] and "nosuch" in status["error"]
    assert "Traceback" not in status["error"]

    shown = CliRunner().invoke(cli, ["jobs", "show", job_id, "--wait", "--interval", "0.1"])
    assert shown.exit_code == 1
    assert json.loads(shown.stdout)["status"] == "failed"
    assert CliRunner().invoke(cli, ["jobs", "show", "no-such-job"]).exit_code == 2


def test_jobs_show_wait_follows_a_running_job(env: World) -> None:
    """``offerwise jobs show ID --wait`` in its own process, while the worker trains."""
    settings = _settings(env)
    conn = get_redis(settings, decode=False)
    job_id = enqueue(conn, train_job, env.tenant, None, "holdings", QUICK,
                     meta={"tenant": env.tenant})  # fmt: skip
    waiter = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "jobs", "show", job_id, "--wait", "--interval", "0.05",
         "--timeout", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    time.sleep(3.0)  # its interpreter starts (it may or may not see the job still queued)
    run_worker(settings, burst=True)
    out, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert json.loads(out)["status"] == "finished"
    assert f"{job_id}: started, training " in err
