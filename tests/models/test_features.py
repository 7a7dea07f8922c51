"""The one feature builder: same numbers for a customer in batch and in real time, explicit NaN
groups, and one transform whose result does not depend on how many rows it is given."""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickstream.profiles import VisitorProfile, customer_visitors_key, read_profile, with_identity
from enrichment.crm import current_version, get_customer
from enrichment.crm.versions import get_version
from models import features as F
from models.features import FeatureBuilder, FeatureError, FeatureSchema, ZipLookup, zip_raw
from models.features import builder as feature_builder
from models.synthetic import SyntheticConfig
from models.training import TrainParams, prepare
from models.web_history import load_events, web_columns
from tests.synth_world import World, make_world

CONFIG = SyntheticConfig(customers=1500, products=3, dead_products=0, web_share=0.6,
                         two_device_share=0.3, seed=5)  # fmt: skip


def small_schema() -> FeatureSchema:
    schema = F.draft_schema(
        {
            "age": "numeric",
            "vip": "boolean",
            "since": "date",
            "tier": "categorical",
            "note": "text",
        },
        products=["a", "b"],
        categories=["shoes", "bags"],
        demographic=["demo_population", "demo_log_density"],
        segment_version="s1",
        has_holdings=True,
        has_zip=True,
        has_web=True,
    )
    schema.crm_categorical["tier"] = ["gold", "silver"]
    schema.segments = [0, 3]
    return schema


# ------------------------------------------------------------------ schema and groups
def test_schema_round_trips_and_refuses_tampering() -> None:
    schema = small_schema()
    again = FeatureSchema.from_json(schema.to_json())
    assert again == schema
    assert again.feature_names == schema.feature_names
    assert "crm_note" not in " ".join(schema.feature_names)  # free text is not a feature
    data = schema.to_dict()
    data["feature_names"] = list(reversed(data["feature_names"]))
    with pytest.raises(FeatureError, match="inconsistent"):
        FeatureSchema.from_dict(data)
    with pytest.raises(FeatureError, match="not a feature schema"):
        FeatureSchema.from_dict({"format": "other"})
    with pytest.raises(FeatureError, match="not valid JSON"):
        FeatureSchema.from_json(b"{nope")
    with pytest.raises(FeatureError, match="unknown type"):
        F.draft_schema({"x": "blob"})


def test_names_are_safe_for_xgboost_and_unique() -> None:
    schema = F.draft_schema({"a[1]": "numeric", "a<1": "numeric", "a 1": "numeric"})
    names = schema.feature_names
    assert len(set(names)) == len(names)
    assert not any(c in n for n in names for c in "[]< ")


def test_anonymous_visitor_has_nan_crm_group_not_zeros() -> None:
    b = FeatureBuilder(small_schema())
    names = b.feature_names
    profile = VisitorProfile(
        visitor="v1",
        counters={"product_view": 3},
        attributes={"first_seen": "1000", "last_seen": "2000"},
        recent=["a"],
        affinities={"shoes": 1.0},
    )
    x = b.live_vector(profile, None, None, now=2000 + 86400)
    v = dict(zip(names, x.tolist(), strict=True))
    assert v["has_crm"] == 0 and v["has_zip"] == 0 and v["has_web"] == 1
    for name in names:
        if name.startswith(("crm_", "holds_", "demo_", "zip_", "segment=")):
            assert math.isnan(v[name]), name
    assert v["web_log_n_product_view"] == pytest.approx(math.log1p(3))
    assert v["web_days_since_last_seen"] == pytest.approx(1.0)
    assert v["web_aff_shoes"] == 1.0 and v["web_aff_bags"] == 0.0
    assert v["web_viewed_a"] == 1.0 and v["web_viewed_b"] == 0.0
    # Nothing known at all: only the flags are numbers.
    x = b.live_vector(None, None, None)
    assert x[:3].tolist() == [0, 0, 0] and np.isnan(x[3:]).all()


def test_identified_customer_values() -> None:
    b = FeatureBuilder(small_schema())
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    customer = {
        "attributes": {
            "age": 40,
            "vip": True,
            "since": "2015-01-01",
            "tier": "bronze",
            "note": "x",
        },
        "holdings": [{"product_id": "b", "quantity": 2, "since": None}],
        "zip": "10001",
    }
    block = {"status": "ok", "demo_population": "21102.0", "demo_log_density": 4.5,
             "latitude": "40.7", "longitude": -73.9, "segment_id": "3", "segment_version": "s1"}  # fmt: skip
    v = dict(
        zip(b.feature_names, b.live_vector(None, customer, block, now=now).tolist(), strict=True)
    )
    assert v["crm_age"] == 40 and v["crm_vip"] == 1
    assert v["crm_since_years"] == pytest.approx(
        (dt.date(2025, 1, 1) - dt.date(2015, 1, 1)).days / 365.25, rel=1e-6
    )
    assert v["crm_tier=gold"] == 0 and v["crm_tier=silver"] == 0 and v["crm_tier=_other"] == 1
    assert v["holds_a"] == 0 and v["holds_b"] == 1
    assert v["demo_population"] == 21102 and v["zip_longitude"] == pytest.approx(-73.9)
    assert v["segment=3"] == 1 and v["segment=0"] == 0 and v["segment=_other"] == 0
    assert v["has_web"] == 0 and math.isnan(v["web_aff_shoes"])
    # A missing category value is NaN across its block; a segment of another segmentation is
    # meaningless to this schema and dropped.
    customer["attributes"]["tier"] = None
    v = dict(
        zip(
            b.feature_names,
            b.live_vector(None, customer, {**block, "segment_version": "s2"}, now=now).tolist(),
            strict=True,
        )
    )
    assert all(math.isnan(v[f"crm_tier={lv}"]) for lv in ("gold", "silver", "_other"))
    assert all(math.isnan(v[f"segment={s}"]) for s in ("0", "3", "_other"))
    assert v["has_zip"] == 1 and v["demo_population"] == 21102
    assert zip_raw({"status": "not_found"}, b.schema) == {"has_zip": [0.0]}


def test_fit_levels_keeps_frequent_levels() -> None:
    schema = small_schema()
    values = ["gold"] * 50 + ["silver"] * 30 + ["rare"] * 3 + [None] * 10
    schema.fit_levels(
        {"crm.tier": pa.array(values), "zip.segment_id": np.array([1.0] * 40 + [np.nan] * 5)}
    )
    assert schema.crm_categorical["tier"] == ["gold", "silver"]
    assert schema.segments == [1]


# ------------------------------------------------------------------ one transform
_text = st.one_of(st.none(), st.sampled_from(["gold", "silver", "bronze", "", " gold "]))
_num = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(min_value=1, max_value=40))
def test_one_row_at_a_time_equals_the_batch(data: st.DataObject, n: int) -> None:
    b = FeatureBuilder(small_schema())
    cols: dict = {}
    for key in ("has_crm", "has_zip", "has_web"):
        cols[key] = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    for key in ("crm.age", "crm.vip", "crm.since", "hold.a", "zip.demo_population", "web.n_purchase",
                "web.last_seen", "web.aff.shoes", "zip.segment_id"):  # fmt: skip
        draw = data.draw(st.lists(_num, min_size=n, max_size=n))
        cols[key] = [np.nan if v is None else v for v in draw]
    cols["zip.segment_id"] = [data.draw(st.sampled_from([np.nan, 0.0, 3.0, 7.0])) for _ in range(n)]
    cols["crm.tier"] = data.draw(st.lists(_text, min_size=n, max_size=n))
    as_of = 1.7e9
    as_arrays = {k: (pa.array(v, pa.string()) if k == "crm.tier" else np.asarray(v, dtype=np.float64))
                 for k, v in cols.items()}  # fmt: skip
    whole = b.transform(as_arrays, n, as_of)
    for i in range(n):
        row = {k: [v[i]] for k, v in cols.items()}
        np.testing.assert_array_equal(b.transform(row, 1, as_of)[0], whole[i])
    assert whole.dtype == np.float32
    # Presence flags are never NaN; an absent group is NaN in every feature.
    assert not np.isnan(whole[:, :3]).any()
    crm_cols = [j for j, g in enumerate(b.schema.group_of()) if g == "crm"]
    absent = whole[:, 0] == 0
    assert np.isnan(whole[np.ix_(absent, crm_cols)]).all()


def test_chunked_transform_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    b = FeatureBuilder(small_schema())
    rng = np.random.default_rng(0)
    n = 1000
    cols = {
        "has_crm": np.ones(n), "has_zip": (rng.random(n) < 0.5).astype(float), "has_web": np.ones(n),
        "crm.age": rng.normal(40, 10, n), "crm.tier": pa.array(rng.choice(["gold", "x", None], n)),
        "zip.segment_id": rng.choice([0.0, 3.0, 5.0, np.nan], n), "hold.b": rng.integers(0, 3, n) * 1.0,
    }  # fmt: skip
    whole = b.transform(cols, n, 1.7e9)
    monkeypatch.setattr(feature_builder, "CHUNK_ROWS", 7)
    np.testing.assert_array_equal(b.transform(cols, n, 1.7e9), whole)


def test_single_row_is_fast() -> None:
    b = FeatureBuilder(small_schema())
    customer = {"attributes": {"age": 40, "vip": True, "since": "2015-01-01", "tier": "gold"},
                "holdings": [{"product_id": "b", "quantity": 1}]}  # fmt: skip
    block = {"status": "ok", "demo_population": 100.0, "segment_id": 3, "segment_version": "s1"}
    profile = VisitorProfile("v", {"product_view": 2}, {"first_seen": "1", "last_seen": "2"}, ["a"])
    b.live_vector(profile, customer, block)
    runs = 300
    started = time.perf_counter()
    for _ in range(runs):
        b.live_vector(profile, customer, block)
    per_row = (time.perf_counter() - started) / runs
    assert per_row < 2e-3  # generous: a loaded CI box; bench/bench_training.py prints the figure


# ------------------------------------------------------------------ train/serve parity
@pytest.fixture(scope="module")
def world(redis_server, shared_data, geo_dir, tmp_path_factory) -> World:
    return make_world(redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("feat"), CONFIG)


def test_batch_and_live_rows_agree_for_the_same_customer(world: World) -> None:
    """Training's features (CRM Parquet + archive) equal serving's (Redis profiles)."""
    r, s, tenant = world.r, world.settings, world.tenant
    params = TrainParams()
    data = prepare(r, s, tenant, products=None, params=params)
    builder = FeatureBuilder(data.schema)
    as_of = data.snapshot["as_of"]
    zips = ZipLookup(s)
    with_web = np.flatnonzero(data.X[:, 2] == 1)
    without = np.flatnonzero(data.X[:, 2] == 0)
    assert with_web.size > 300 and without.size > 300
    checked_two_devices = 0
    for i in np.concatenate([with_web[:250], without[:60]]):
        h = data.keys[i]
        customer = get_customer(r, tenant, h)
        assert customer is not None
        visitors = sorted(v.decode() for v in r.smembers(customer_visitors_key(tenant, h)))
        profile = None
        if data.X[i, 2] == 1:
            profiles = [read_profile(r, tenant, v) for v in visitors]
            # The visitor being served is the most recently active one.
            primary = max(profiles, key=lambda p: int(p.attributes["last_seen"]))
            profile = with_identity(r, tenant, primary)
            checked_two_devices += len(visitors) > 1
        live = builder.live_vector(profile, customer, zips.block(customer["zip"]), now=as_of)
        np.testing.assert_allclose(live, data.X[i], rtol=1e-6, atol=1e-6, equal_nan=True,
                                   err_msg=f"customer {h}")  # fmt: skip
    assert checked_two_devices > 20


def test_web_history_matches_the_live_counters(world: World) -> None:
    """Independent of the builder: archive aggregates equal the live profile's own fields."""
    r, s, tenant = world.r, world.settings, world.tenant
    v = get_version(s, tenant, current_version(r, tenant))
    keys = pq.read_table(v.path / "customers.parquet").column("customer_hash").to_pylist()
    events = load_events(s.events_dir, tenant)
    category_of = {p["product_id"]: p["category"] for p in world.data.catalog}
    cols = web_columns(events, keys, as_of=time.time(), categories=world.data.categories,
                       products=world.data.products, category_of=category_of)  # fmt: skip
    checked = 0
    for i, h in enumerate(keys[:400]):
        visitors = [x.decode() for x in r.smembers(customer_visitors_key(tenant, h))]
        if len(visitors) != 1:
            continue
        p = read_profile(r, tenant, visitors[0])
        assert cols["has_web"][i] == 1
        for t in F.WEB_COUNTERS:
            assert cols[f"web.n_{t}"][i] == p.counters.get(t, 0)
        assert cols["web.last_seen"][i] == int(p.attributes["last_seen"])
        assert cols["web.cart_count"][i] == len(p.cart)
        assert cols["web.recent_count"][i] == len(p.recent)
        for c in world.data.categories:
            assert cols[f"web.aff.{c}"][i] == pytest.approx(p.affinities.get(c, 0.0), abs=1e-9)
        checked += 1
    assert checked > 100


def test_serving_uses_the_crm_zip_of_identified_customers(world: World) -> None:
    zips = ZipLookup(world.settings)
    typed = {"zip_status": "ok", "zip_postal_code": "99501", "zip_segment_id": "1"}
    profile = VisitorProfile("v", {"page_view": 1}, typed)
    customer = {"zip": world.data.zips[0], "attributes": {}, "holdings": []}
    assert F.zip_block_for(profile, customer, zips)["postal_code"] == world.data.zips[0]
    # Anonymous, or a customer without a usable ZIP: the ZIP the visitor typed.
    assert F.zip_block_for(profile, None, zips)["postal_code"] == "99501"
    assert F.zip_block_for(profile, {"zip": None}, zips)["segment_id"] == "1"
    assert F.zip_block_for(None, None, zips) is None
