"""Property tests of the pure parts of the CRM import: type inference, value conversion, ZIP
normalisation, JSON encoding of serving profiles, derived features and row validation."""

from __future__ import annotations

import datetime as dt
import math
import secrets

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from enrichment.crm.coltypes import (
    ColumnType,
    convert,
    infer_type,
    normalize_zip,
    parse_types_option,
)
from enrichment.crm.derive import compute, parse_derive, parse_derive_options
from enrichment.crm.errors import CrmError
from enrichment.crm.jsonenc import json_arrays, json_values
from enrichment.crm.validate import CustomerPlan, CustomerValidator, ErrorLog, hash_ids, make_hasher
from store.tenants import Tenant

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)


def number_text(x: float, style: int) -> str:
    return [repr(x), f"{x:.2f}", f"{x:e}", f" {x} "][style]


@FAST
@given(st.lists(st.tuples(finite, st.integers(0, 3)), min_size=1, max_size=40))
def test_numbers_in_any_notation_infer_numeric_and_convert_exactly(values):
    texts = [number_text(x, s) for x, s in values]
    assume(
        not any(
            t.strip().lstrip("+-").startswith("0")
            and len(t.strip().lstrip("+-")) > 1
            and t.strip().lstrip("+-")[1].isdigit()
            for t in texts
        )
    )
    array = pa.array(texts)
    assert infer_type(array) == ColumnType("numeric")
    converted, bad = convert(array, ColumnType("numeric"))
    assert not bad.any()
    assert converted.to_pylist() == [float(t) for t in texts]


@FAST
@given(
    st.lists(st.integers(1, 10_000).map(str), min_size=20, max_size=60),
    st.lists(
        st.sampled_from(["abc", "12a", "1.2.3", "--4", "0x10", "inf", "NaN?", "1e999"]),
        min_size=1,
        max_size=5,
    ),
    st.randoms(use_true_random=False),
)
def test_non_numbers_in_a_numeric_column_are_flagged_exactly(good, bad, rnd):
    texts = good + bad
    rnd.shuffle(texts)
    _, mask = convert(pa.array(texts), ColumnType("numeric"))
    assert [texts[i] for i in np.flatnonzero(mask)] == [t for t in texts if t in bad]


def test_identifier_like_and_mixed_columns_stay_categorical():
    assert infer_type(pa.array(["00123", "45", "7"])) == ColumnType("categorical")
    assert infer_type(pa.array(["1", "2", "x"])) == ColumnType("categorical")
    assert infer_type(pa.array([None, ""])) == ColumnType("categorical")
    assert infer_type(pa.array(["0", "1", "1"])) == ColumnType("numeric")


@FAST
@given(
    st.lists(
        st.sampled_from(["yes", "No", "Y", "n", "TRUE", "false", "t", "F", None]),
        min_size=1,
        max_size=30,
    )
)
def test_yes_no_words_are_booleans(words):
    assume(any(w is not None for w in words))
    array = pa.array(words)
    assert infer_type(array) == ColumnType("boolean")
    values, bad = convert(array, ColumnType("boolean"))
    assert not bad.any()
    assert values.to_pylist() == [
        None if w is None else w.lower() in ("yes", "y", "true", "t") for w in words
    ]


DATE_FORMATS = {"ymd": "%Y-%m-%d", "mdy": "%m/%d/%Y", "dmy": "%d.%m.%Y"}


@FAST
@given(
    st.lists(st.dates(dt.date(1850, 1, 1), dt.date(2150, 12, 31)), min_size=1, max_size=30),
    st.sampled_from(sorted(DATE_FORMATS)),
)
def test_dates_in_each_day_order_convert_exactly(days, order):
    texts = [d.strftime(DATE_FORMATS[order]) for d in days]
    values, bad = convert(pa.array(texts), ColumnType("date", order))
    assert not bad.any() and values.to_pylist() == days
    inferred = infer_type(pa.array(texts))
    assert inferred.kind == "date"
    if order == "ymd" or any(d.day > 12 for d in days):
        assert inferred.date_order == order  # unambiguous: the day order is found


def test_impossible_dates_are_errors_not_rollovers():
    texts = [
        "2024-02-29",
        "2023-02-29",
        "2024-02-30",
        "2024-13-01",
        "1700-01-01",
        "2024-1-5",
        "2024-01-05T10:11:12Z",
    ]
    values, bad = convert(pa.array(texts), ColumnType("date", "ymd"))
    assert bad.tolist() == [False, True, True, True, True, False, False]
    assert values.to_pylist() == [
        dt.date(2024, 2, 29),
        None,
        None,
        None,
        None,
        dt.date(2024, 1, 5),
        dt.date(2024, 1, 5),
    ]


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 99_999), st.sampled_from(["", "-1234", ".0"]), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_us_zips_are_five_digits_whatever_the_export_did(items):
    texts = [f"{n:05d}{suffix}" if padded else f"{n}{suffix}" for n, suffix, padded in items]
    zips, bad = normalize_zip(pa.array(texts))
    assert not bad.any()
    assert zips.to_pylist() == [f"{n:05d}" for n, _, _ in items]


def test_malformed_zips_are_flagged_and_dropped():
    zips, bad = normalize_zip(pa.array(["ABCDE", "123456", "1234-12", None, " 02134 "]))
    assert zips.to_pylist() == [None, None, None, None, "02134"]
    assert bad.tolist() == [True, True, True, False, False]
    assert normalize_zip(pa.array(["sw1a 1aa"]), "GB")[0].to_pylist() == ["SW1A 1AA"]


json_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
    max_size=30,
)


@FAST
@given(st.lists(st.one_of(st.none(), json_text), min_size=1, max_size=30))
def test_json_encoding_of_text_round_trips(values):
    encoded = json_values(pa.array(values, pa.string())).to_pylist()
    assert [orjson.loads(e) for e in encoded] == values


@FAST
@given(
    st.lists(
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        min_size=1,
        max_size=30,
    )
)
def test_json_encoding_of_numbers_round_trips_and_nulls_the_rest(values):
    encoded = json_values(pa.array(values, pa.float64())).to_pylist()
    expected = [v if v is not None and math.isfinite(v) else None for v in values]
    assert [orjson.loads(e) for e in encoded] == expected


@FAST
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), json_text),
            st.one_of(st.none(), finite),
            st.one_of(st.none(), st.booleans()),
            st.one_of(st.none(), st.dates()),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_json_rows_are_arrays_of_the_columns(rows):
    columns = [
        pa.array([r[0] for r in rows], pa.string()),
        pa.array([r[1] for r in rows], pa.float64()),
        pa.array([r[2] for r in rows], pa.bool_()),
        pa.array([r[3] for r in rows], pa.date32()),
    ]
    blobs = json_arrays([json_values(c) for c in columns]).to_pylist()
    assert [orjson.loads(b) for b in blobs] == [
        [r[0], r[1], r[2], r[3].isoformat() if r[3] else None] for r in rows
    ]


@FAST
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), finite), st.one_of(st.none(), finite)),
        min_size=1,
        max_size=30,
    )
)
def test_ratios_are_guarded_against_zero_and_missing(pairs):
    d = parse_derive("ratio=a/b")
    out = compute(
        d,
        {
            "a": pa.array([p[0] for p in pairs], pa.float64()),
            "b": pa.array([p[1] for p in pairs], pa.float64()),
        },
    ).to_pylist()
    for (a, b), got in zip(pairs, out, strict=True):
        if a is None or b is None or b == 0 or not math.isfinite(a / b):
            assert got is None
        else:
            assert got == a / b


def test_derived_expressions_are_parsed_safely():
    d = parse_derive("x = (`gross income` - tax) * 2 / -age")
    assert d.columns == ("gross income", "tax", "age")
    cols = {"gross income": pa.array([10.0]), "tax": pa.array([4.0]), "age": pa.array([3.0])}
    assert compute(d, cols).to_pylist() == [-4.0]
    for bad in (
        "x",
        "=a",
        "x=a**2",
        "x=f(a)",
        "x=a.b",
        "x=a if b else c",
        "x=[a]",
        "1x=a",
        "x=a;y=b;x=c",
    ):
        with pytest.raises(CrmError):
            parse_derive_options([bad])


def test_types_option_is_checked():
    assert parse_types_option("age=numeric, joined=date:DMY ,code=categorical") == {
        "age": "numeric",
        "joined": "date:dmy",
        "code": "categorical",
    }
    for bad in ("age", "age=number", "=numeric", "age=numeric:ymd", "d=date:ydm"):
        with pytest.raises(CrmError):
            parse_types_option(bad)


def _tenant() -> Tenant:
    return Tenant(
        name="acme", origins=(), rate_limit=1, created_at=0.0, id_secret=secrets.token_bytes(32)
    )


def test_fast_hasher_is_the_tenant_definition():
    t = _tenant()
    hasher = make_hasher(t)
    for raw in ("C-1", "  padded  ", "Ünïcödé", "x" * 300, "0"):
        assert hasher(raw) == t.hash_customer_id(raw)
    ids = pa.array(["a", None, "b", "a"])
    assert hash_ids(ids, hasher) == [
        t.hash_customer_id("a"),
        None,
        t.hash_customer_id("b"),
        t.hash_customer_id("a"),
    ]


@FAST
@given(
    st.integers(5, 60),
    st.sets(st.integers(0, 59), max_size=8),
    st.sets(st.integers(0, 59), max_size=8),
)
def test_row_validation_rejects_exactly_the_bad_rows(n, bad_values, duplicates):
    """Rows with an unreadable number or an id seen before are rejected, each with its file row."""
    bad_values = {i for i in bad_values if i < n}
    duplicates = {i for i in duplicates if 0 < i < n}
    ids = [f"C{i}" for i in range(n)]
    for i in duplicates:
        ids[i] = ids[i - 1]
    income = ["oops" if i in bad_values else str(1000 + i) for i in range(n)]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(ids), pa.array(income)], names=["customer_id", "income"]
    )
    plan = CustomerPlan("customer_id", None, "US", [("income", ColumnType("numeric"), "declared")])
    log = ErrorLog(cap=1000)
    tenant = _tenant()
    validator = CustomerValidator(plan, make_hasher(tenant), set(), log)
    out = validator.process(batch, np.arange(2, n + 2))
    first_row: dict[str, int] = {}
    expected_dup = set()
    for i, cid in enumerate(ids):
        if cid in first_row:
            expected_dup.add(i)
        else:
            first_row[cid] = i
    rejected = bad_values | expected_dup
    assert validator.rows_rejected == len(rejected) and out.num_rows == n - len(rejected)
    assert {(e["row"], e["reason"]) for e in log.errors} == {
        (i + 2, "not a number") for i in bad_values
    } | {(i + 2, "duplicate customer id") for i in expected_dup}
    kept = [i for i in range(n) if i not in rejected]
    assert out.column("customer_hash").to_pylist() == [
        tenant.hash_customer_id(ids[i]) for i in kept
    ]
    assert out.column("income").to_pylist() == [1000.0 + i for i in kept]
