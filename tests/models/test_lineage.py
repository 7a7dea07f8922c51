"""Lineage for erasure (issue 13 item 6): each version knows whom it was trained on, an erasure
lists only the versions that saw the person, and one command retrains without the erased."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from clickstream.archiver import Archiver
from clickstream.ingest import Ingestor
from enrichment.crm import ImportOptions, import_crm
from models import lineage, registry
from models.erasure import erase_person
from models.pipeline import train_and_register
from models.retrain import retrain_erased
from models.synthetic import SyntheticConfig
from models.training import TrainParams
from store.tenants import get_tenant
from tests.synth_world import make_world

# Training a small tenant cross-validates its candidates (models/training/selection.py):
# minutes on a busy shared 2-core machine.
pytestmark = pytest.mark.timeout(1200)

FAST = TrainParams(max_rounds=30, early_stopping=5)


# --- the filter ---------------------------------------------------------------------------------


def test_filter_has_no_false_negatives_and_its_stated_false_positive_rate(tmp_path) -> None:
    key = secrets.token_bytes(32)
    members = [lineage.visitor_item(f"visitor-{i}") for i in range(100_000)]
    members += [lineage.customer_item(secrets.token_hex(16)) for _ in range(100_000)]
    bloom = lineage.BloomFilter.build(members, key)
    m, k = lineage.sizes(len(members))
    assert (bloom.m, bloom.k, bloom.n) == (m, k, 200_000) and k == 13
    assert 19.1 < m / len(members) < 19.3  # -ln(1e-4) / ln(2)^2 = 19.17 bits per person
    path = tmp_path / lineage.LINEAGE_FILE
    path.write_bytes(bloom.to_bytes())
    stored = lineage.BloomFilter.read(path)
    assert path.stat().st_size == lineage.HEADER_BYTES + m // 8
    # No false negatives, from memory and from the mapped file alike.
    assert bloom.contains_many(members, key).all()
    assert stored.contains_many(members, key).all()
    assert all(stored.contains(item, key) for item in members[:1000])
    # False positives: 400,000 people who were never in it; 1e-4 expects 40 (Poisson sd 6.3).
    strangers = [lineage.visitor_item(f"stranger-{i}") for i in range(400_000)]
    false_positives = int(stored.contains_many(strangers, key).sum())
    assert false_positives / len(strangers) < 2 * lineage.FALSE_POSITIVE_RATE
    # Without the tenant's key the file says nothing about its members.
    other = secrets.token_bytes(32)
    assert stored.contains_many(members, other).sum() < 2 * lineage.FALSE_POSITIVE_RATE * len(
        members
    )


def test_sizes_follow_the_formula() -> None:
    assert lineage.sizes(0) == lineage.sizes(1)  # an empty training still gets a valid filter
    m, k = lineage.sizes(1_000_000)
    assert m // 8 == pytest.approx(2.4e6, rel=0.01) and k == 13
    assert lineage.sizes(1000, 0.01)[1] == 7


# --- versions, erasure, retraining ----------------------------------------------------------------


@pytest.fixture(scope="module")
def world(redis_server, shared_data, geo_dir, tmp_path_factory):
    return make_world(redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("lineage"),
                      SyntheticConfig(customers=900, products=3, dead_products=0, seed=5),
                      tenant="shop")  # fmt: skip


def _add_customer(world, customer_id: str, visitor: str) -> None:
    """A customer who arrives after the first training: a new CRM version with them, and
    their web visits in the archive."""
    customers = world.data.customers
    row = customers.slice(0, 1).to_pydict()
    row["customer_id"] = [customer_id]
    grown = pa.concat_tables([customers, pa.table(row, schema=customers.schema)])
    world.data.customers = grown
    sink_c, sink_h = pa.BufferOutputStream(), pa.BufferOutputStream()
    pacsv.write_csv(grown, sink_c)
    pacsv.write_csv(world.data.holdings, sink_h)
    import_crm(
        world.r, world.tenant, sink_c.getvalue().to_pybytes(), sink_h.getvalue().to_pybytes(),
        options=ImportOptions(id_column="customer_id", max_reject_rate=0.0),
        settings=world.settings, customers_name="customers.csv", holdings_name="holdings.csv",
    )  # fmt: skip
    tenant = get_tenant(world.r, world.tenant)
    now = time.time()
    events = [
        {"id": f"{visitor}-1", "type": "identify", "ts": int(now * 1000), "customer_id": customer_id},
        {"id": f"{visitor}-2", "type": "product_view", "ts": int(now * 1000),
         "product_id": world.data.products[0]},
    ]  # fmt: skip
    Ingestor(world.r).ingest(tenant, visitor, events, now=now)
    Archiver(world.r, world.settings.events_dir).archive_tenant(world.tenant)


def test_erasure_lists_only_the_versions_that_saw_the_person_and_retraining_replaces_them(world):
    r, settings, name = world.r, world.settings, world.tenant
    tenant = get_tenant(r, name)
    first = train_and_register(r, settings, name, params=replace(FAST))
    v1 = first["version"]
    meta = registry.get_version(r, name, v1)
    assert meta["lineage"]["customers"] == 900 and meta["lineage"]["visitors"] > 0
    assert meta["lineage"]["false_positive_rate"] == lineage.FALSE_POSITIVE_RATE
    assert (registry.version_dir(settings, name, v1) / lineage.LINEAGE_FILE).is_file()

    _add_customer(world, "NEWCOMER-1", "v-newcomer")
    second = train_and_register(r, settings, name, params=replace(FAST), auto_promote=False)
    v2 = second["version"]
    assert "retrain" not in second["registry"]  # no erasure ran meanwhile
    assert registry.get_version(r, name, v2)["lineage"]["customers"] == 901

    # The newcomer was in the second version's data only.
    receipt = erase_person(r, settings, tenant, customer_id="NEWCOMER-1")
    assert receipt["model_versions_to_retrain"] == [v2]
    assert receipt["model_lineage"]["checked"] == sorted([v1, v2])
    assert receipt["model_lineage"]["saw_person"] == [v2]
    assert receipt["model_lineage"]["no_lineage"] == []
    # An early customer, erased by a visitor id of theirs alone, was in both.
    early = world.data.sessions[0][0]
    both = erase_person(r, settings, tenant, visitor_id=early)
    assert both["model_versions_to_retrain"] == sorted([v1, v2])
    # Someone the service never saw is in neither.
    assert (
        erase_person(r, settings, tenant, visitor_id="never-seen")["model_versions_to_retrain"]
        == []
    )

    listed = {v["version"]: v for v in registry.list_versions(r, name)}
    assert set(lineage.flagged(r, name)) == {v1, v2}
    assert "retrain_because" in listed[v1] and listed[v1]["champion"]

    out = retrain_erased(r, settings, name, params=replace(FAST))
    v3 = out["version"]
    assert {s["version"] for s in out["superseded"]} == {v1, v2}
    # The champion saw an erased person: the replacement is promoted whatever the holdout says.
    assert registry.champion(r, name) == v3 and out["registry"]["promoted"]
    assert lineage.flagged(r, name) == {}
    listed = {v["version"]: v for v in registry.list_versions(r, name)}
    assert listed[v1]["superseded_by"] == v3 and listed[v2]["superseded_by"] == v3
    assert not any("retrain_because" in v for v in listed.values())
    with pytest.raises(registry.NothingToRollBack):  # never back to a superseded version
        registry.rollback(r, name)
    # The new version was trained without them: erasing them again names no version.
    again = erase_person(r, settings, tenant, customer_id="NEWCOMER-1")
    assert again["model_versions_to_retrain"] == []
    # The superseded versions still hold what they learned from them: listed apart, to delete.
    assert again["model_lineage"]["superseded_saw_person"] == [v2]
    assert not lineage.saw(tenant, registry.version_dir(settings, name, v3), None, [early])

    nothing = retrain_erased(r, settings, name)
    assert nothing["version"] is None and nothing["superseded"] == []


def test_a_version_trained_while_an_erasure_ran_is_flagged(world):
    r, settings, name = world.r, world.settings, world.tenant
    lineage.erasure_started(r, name, "receipt-under-way", time.time())
    try:
        out = train_and_register(r, settings, name, params=replace(FAST), auto_promote=False)
    finally:
        lineage.erasure_finished(r, name, "receipt-under-way")
    assert "receipt-under-way" in out["registry"]["retrain"]
    assert out["version"] in lineage.flagged(r, name)
    # Retraining with deletion removes the flagged version and its artifacts.
    done = retrain_erased(r, settings, name, params=replace(FAST), delete_superseded=True)
    assert [s["version"] for s in done["superseded"]] == [out["version"]]
    assert registry.get_version(r, name, out["version"]) is None
    assert not registry.version_dir(settings, name, out["version"]).exists()
    assert registry.champion(r, name) != out["version"]


def test_erasures_during_reads_running_and_finished_erasures(world):
    r, name = world.r, world.tenant
    now = time.time()
    receipts = [
        {"receipt_id": "b", "erased_at": now - 10},
        {"receipt_id": "a", "erased_at": now - 100},
    ]
    assert lineage.erasures_during(r, name, now - 50, receipts, now) == ["b"]
    lineage.erasure_started(r, name, "stale", now - 2 * lineage.ERASURE_MAX_S)
    lineage.erasure_started(r, name, "live", now - 5)
    try:
        assert lineage.erasures_during(r, name, now - 1, receipts, now) == ["live"]
    finally:
        lineage.erasure_finished(r, name, "stale")
        lineage.erasure_finished(r, name, "live")


def test_a_version_without_lineage_is_listed_to_be_safe(world):
    r, settings, name = world.r, world.settings, world.tenant
    tenant = get_tenant(r, name)
    champion = registry.champion(r, name)
    folder = registry.version_dir(settings, name, champion)
    saved = (folder / lineage.LINEAGE_FILE).read_bytes()
    (folder / lineage.LINEAGE_FILE).unlink()  # as a version trained before lineage existed
    try:
        receipt = erase_person(r, settings, tenant, visitor_id="nobody-at-all")
    finally:
        (folder / lineage.LINEAGE_FILE).write_bytes(saved)
        lineage.unflag(r, name, [champion])
    assert receipt["model_lineage"]["no_lineage"] == [champion]
    assert champion in receipt["model_versions_to_retrain"]
    assert np.frombuffer(saved[:8], dtype=np.uint8).tobytes() == lineage.MAGIC


def test_no_filter_is_written_when_the_training_data_is_gone(world, tmp_path):
    """A partial filter would miss people: without the CRM version, the version has no lineage
    and every erasure lists it."""
    tenant = get_tenant(world.r, world.tenant)
    out = lineage.record(
        world.settings, tenant, "v999", lambda name, data: (tmp_path / name).write_bytes(data)
    )
    assert out["recorded"] is False and "v999" in out["why"]
    assert not (tmp_path / lineage.LINEAGE_FILE).exists()
    assert lineage.saw(tenant, tmp_path, "0" * 32, []) is None
