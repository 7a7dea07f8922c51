"""CRM import end to end on a real Redis and a temporary data dir.

Every refused file must leave the previous version live and nothing half-written behind; every
accepted one must be readable back, value for value, from Redis (one customer) and from Parquet.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from enrichment.crm import (
    CrmError,
    CrmImportError,
    ImportOptions,
    activate,
    current_version,
    erase_customer,
    get_customer,
    import_crm,
    rollback,
    serving,
    versions_info,
)
from enrichment.crm.versions import TenantLock
from store.config import Settings
from store.tenants import Tenant, create_tenant, get_tenant

HEADER = ["customer_id", "age", "income", "zip", "segment", "joined", "vip"]
SEGMENTS = ["gold", "silver", "bronze"]


def rows(n: int = 20, income_step: int = 1000, prefix: str = "C-") -> list[list[str]]:
    """Deterministic customers: ids C-000..., ages 20+i, incomes 30000+i*step, ZIPs with leading zeros."""
    out = []
    for i in range(n):
        zip_code = (
            f"{2100 + i}" if i % 2 else f"{10001 + i:05d}"
        )  # 4-digit ZIPs lost their leading zero
        joined = (dt.date(2020, 1, 1) + dt.timedelta(days=37 * i)).isoformat()
        vip = "yes" if i % 3 == 0 else "no"
        out.append(
            [
                f"{prefix}{i:03d}",
                str(20 + i),
                str(30000 + i * income_step),
                zip_code,
                SEGMENTS[i % 3],
                joined,
                vip,
            ]
        )
    return out


def csv_bytes(
    data: list[list[str]], header: list[str] = HEADER, delimiter: str = ",", encoding: str = "utf-8"
) -> bytes:
    lines = [delimiter.join(header)] + [delimiter.join(r) for r in data]
    return ("\n".join(lines) + "\n").encode(encoding)


@pytest.fixture
def tenant(r: redis.Redis) -> Tenant:
    create_tenant(r, "acme")
    t = get_tenant(r, "acme")
    assert t is not None
    return t


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def profile(r: redis.Redis, tenant: Tenant, raw_id: str) -> dict | None:
    return get_customer(r, "acme", tenant.hash_customer_id(raw_id))


@pytest.fixture
def v1(r: redis.Redis, tenant: Tenant, settings: Settings, tmp_path: Path) -> dict:
    """A first good version is live."""
    report = import_crm(r, "acme", write(tmp_path, "v1.csv", csv_bytes(rows())), settings=settings)
    assert report["status"] == "imported" and report["version"] == "v1"
    return report


def assert_only_v1_live(r: redis.Redis, tenant: Tenant, settings: Settings) -> None:
    """The previous version serves unchanged and the refused import left nothing behind."""
    assert current_version(r, "acme") == "v1"
    assert profile(r, tenant, "C-005")["attributes"]["income"] == 35000
    base = settings.crm_dir / "acme"
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith(".")) == ["v1"]
    assert not list(base.glob(".v*.staging"))
    assert not list((base / ".incoming").glob("*")) if (base / ".incoming").exists() else True
    live = serving.live_serving_id(r, "acme")
    assert serving.namespaces(r, "acme") == [live]
    assert not [k for k in r.scan_iter(match="{t:acme}:crm:s:*") if live.encode() not in k]


# -- a good import ----------------------------------------------------------------------------


def test_good_import_serves_every_customer_with_typed_values(r, tenant, settings, tmp_path):
    data = rows()
    report = import_crm(
        r, "acme", write(tmp_path, "customers.csv", csv_bytes(data)), settings=settings
    )
    assert report["status"] == "imported"
    assert (report["rows_read"], report["rows_imported"], report["rows_rejected"]) == (20, 20, 0)
    assert (
        report["errors"] == []
        and report["live_version"] == "v1"
        and report["previous_version"] is None
    )
    types = {c["name"]: c["type"] for c in report["columns"]}
    assert types == {
        "age": "numeric",
        "income": "numeric",
        "segment": "categorical",
        "joined": "date:ymd",
        "vip": "boolean",
    }
    assert report["zip_column"] == "zip" and report["id_column"] == "customer_id"
    for row in data:
        p = profile(r, tenant, row[0])
        assert p is not None and p["version"] == "v1"
        assert p["zip"] == row[3].zfill(5) and len(p["zip"]) == 5
        assert p["attributes"] == {
            "age": float(row[1]),
            "income": float(row[2]),
            "segment": row[4],
            "joined": row[5],
            "vip": row[6] == "yes",
        }
        assert p["holdings"] == []
    table = pq.read_table(settings.crm_dir / "acme" / "v1" / "customers.parquet")
    assert table.num_rows == 20
    assert (
        table.schema.field("joined").type == pa.date32()
        and table.schema.field("vip").type == pa.bool_()
    )
    assert set(table["customer_hash"].to_pylist()) == {
        tenant.hash_customer_id(row[0]) for row in data
    }
    assert get_customer(r, "acme", "0" * 32) is None
    assert get_customer(r, "acme", "not-a-hash") is None


def test_streamed_upload_is_spooled_and_removed(r, tenant, settings):
    report = import_crm(
        r, "acme", io.BytesIO(csv_bytes(rows(5))), settings=settings, customers_name="upload.csv"
    )
    assert report["rows_imported"] == 5 and report["source"]["name"] == "upload.csv"
    assert not list((settings.crm_dir / "acme" / ".incoming").glob("*"))
    assert profile(r, tenant, "C-004")["attributes"]["age"] == 24


def test_parquet_upload_gives_the_same_profiles_as_csv(r, tenant, settings, tmp_path):
    data = rows(8)
    table = pa.table(
        {
            "customer_id": [row[0] for row in data],
            "age": pa.array([int(row[1]) for row in data], pa.int64()),
            "income": pa.array([float(row[2]) for row in data]),
            "zip": [row[3] for row in data],
            "segment": pa.array([row[4] for row in data]).dictionary_encode(),
            "joined": pa.array([dt.date.fromisoformat(row[5]) for row in data]),
            "vip": [row[6] == "yes" for row in data],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    nested = io.BytesIO()
    pq.write_table(table.append_column("tags", pa.array([["a"]] * len(data))), nested)
    with pytest.raises(
        CrmImportError, match=r"column 'tags' has the type list<.*which a CRM profile cannot hold"
    ):
        import_crm(r, "acme", io.BytesIO(nested.getvalue()), settings=settings)
    report = import_crm(r, "acme", io.BytesIO(buf.getvalue()), settings=settings)
    assert report["source"]["format"] == "parquet" and report["rows_imported"] == 8
    from_parquet = {row[0]: profile(r, tenant, row[0])["attributes"] for row in data}
    import_crm(r, "acme", write(tmp_path, "same.csv", csv_bytes(data)), settings=settings)
    assert {row[0]: profile(r, tenant, row[0])["attributes"] for row in data} == from_parquet


# -- whole-file problems: a clear report, and the previous version stays live ------------------


def _semicolons() -> bytes:
    return csv_bytes(rows(), delimiter=";")


BAD_FILES = [
    ("wrong delimiter", _semicolons, {"delimiter": ","}, "only one column found"),
    ("unknown delimiter", lambda: csv_bytes(rows(), delimiter=":"), {}, "only one column found"),
    (
        "missing id column",
        lambda: csv_bytes(rows(), header=["customerid", *HEADER[1:]]),
        {},
        "no id column 'customer_id'",
    ),
    ("empty file", lambda: csv_bytes([]), {}, "no data rows"),
    ("blank lines only", lambda: b"\n\n  \n", {}, "no header row"),
    ("0-byte upload", lambda: b"", {}, "is empty (0 bytes)"),
    (
        "wrong encoding (forced UTF-8)",
        lambda: csv_bytes(
            [["C-1", "30", "1", "10001", "Zürich", "2020-01-01", "no"]], encoding="latin-1"
        ),
        {"encoding": "utf-8"},
        "not valid utf-8",
    ),
    (
        "mixed encodings",
        lambda: (
            csv_bytes(rows(3)).replace(b"gold", "Zürich".encode()) + "Zürich\n".encode("latin-1")
        ),
        {},
        "mixes encodings",
    ),
    (
        "duplicate ids (most rows)",
        lambda: csv_bytes([[f"C-{i % 3}", *row[1:]] for i, row in enumerate(rows())]),
        {},
        "duplicate customer id",
    ),
    (
        "non-numeric in a numeric column",
        lambda: csv_bytes(
            [[row[0], "unknown" if i % 2 else row[1], *row[2:]] for i, row in enumerate(rows())]
        ),
        {"types": {"age": "numeric"}},
        "not a number",
    ),
    (
        "repeated column name",
        lambda: csv_bytes(rows(), header=["customer_id", "age", "age", *HEADER[3:]]),
        {},
        "column name 'age' appears more than once",
    ),
    ("Excel workbook", lambda: b"PK\x03\x04" + b"\x00" * 64, {}, "Excel"),
    ("truncated Parquet", lambda: b"PAR1" + b"\x00" * 64, {}, "truncated Parquet"),
]


@pytest.mark.parametrize(
    ("case", "content", "options", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES]
)
def test_bad_file_is_refused_with_a_clear_report_and_v1_stays_live(
    r, tenant, settings, tmp_path, v1, case, content, options, message
):
    path = write(tmp_path, "bad.csv", content())
    with pytest.raises(CrmImportError) as caught:
        import_crm(r, "acme", path, options=ImportOptions(**options), settings=settings)
    report = caught.value.report
    assert message.lower() in str(caught.value).lower()
    assert report["status"] == "rejected" and report["live_version"] == "v1"
    assert message.lower() in report["problem"].lower() and "v1 is still live" in report["message"]
    assert report["version"] is None
    assert_only_v1_live(r, tenant, settings)


def test_zero_byte_stream_upload_is_refused(r, tenant, settings, v1):
    with pytest.raises(CrmImportError, match=r"empty \(0 bytes\)"):
        import_crm(r, "acme", io.BytesIO(b""), settings=settings)
    assert_only_v1_live(r, tenant, settings)


def test_row_errors_name_row_column_and_reason_and_the_rest_is_imported(
    r, tenant, settings, tmp_path, v1
):
    data = rows(40, income_step=2000)
    data[4][2] = "lots"  # file row 6: non-numeric income
    data[9][0] = data[2][0]  # file row 11: duplicate of row 4's id
    data[12][0] = ""  # file row 14: missing id
    data[15][3] = "ABCDE"  # file row 17: bad ZIP, row kept
    report = import_crm(r, "acme", write(tmp_path, "v2.csv", csv_bytes(data)), settings=settings)
    assert (
        report["status"] == "imported"
        and report["version"] == "v2"
        and report["previous_version"] == "v1"
    )
    assert (report["rows_read"], report["rows_imported"], report["rows_rejected"]) == (40, 37, 3)
    errors = {(e["row"], e["column"], e["reason"]) for e in report["errors"]}
    assert errors == {
        (6, "income", "not a number"),
        (11, "customer_id", "duplicate customer id"),
        (14, "customer_id", "missing customer id"),
        (17, "zip", "invalid ZIP code (value dropped, row kept)"),
    }
    dup = next(e for e in report["errors"] if e["row"] == 11)
    assert dup["detail"] == "first seen at row 4" and "value" not in dup  # ids are never quoted
    assert next(e for e in report["errors"] if e["row"] == 6)["value"] == "lots"
    assert report["error_counts"] == {
        "not a number": 1,
        "duplicate customer id": 1,
        "missing customer id": 1,
        "invalid ZIP code (value dropped, row kept)": 1,
    }
    assert profile(r, tenant, data[4][0]) is None
    assert (
        profile(r, tenant, data[2][0])["attributes"]["income"] == 30000 + 2 * 2000
    )  # the first one
    assert profile(r, tenant, data[15][0])["zip"] is None
    assert profile(r, tenant, data[16][0])["attributes"]["income"] == 30000 + 16 * 2000


def test_strict_mode_refuses_a_file_with_any_bad_row(r, tenant, settings, tmp_path, v1):
    data = rows(30)
    data[7][1] = "old"
    with pytest.raises(CrmImportError, match="1 of 30 rows") as caught:
        import_crm(
            r,
            "acme",
            write(tmp_path, "strict.csv", csv_bytes(data)),
            options=ImportOptions(max_reject_rate=0),
            settings=settings,
        )
    assert caught.value.report["errors"][0] == {
        "row": 9,
        "column": "age",
        "reason": "not a number",
        "value": "old",
    }
    assert_only_v1_live(r, tenant, settings)


def test_ragged_rows_and_blank_lines_keep_line_numbers(r, tenant, settings, tmp_path):
    lines = csv_bytes(rows(40)).decode().splitlines()
    lines.insert(3, "")  # a blank line becomes file line 4
    lines[6] = lines[6] + ",extra"  # file line 7 has a field too many
    lines[9] = ",".join(lines[9].split(",")[:3])  # file line 10 has too few
    fields = lines[12].split(",")
    lines[12] = ",".join([fields[0], "x", *fields[2:]])  # file line 13: bad age
    report = import_crm(
        r, "acme", write(tmp_path, "ragged.csv", ("\n".join(lines) + "\n").encode()),
        options=ImportOptions(types={"age": "numeric"}), settings=settings,
    )  # fmt: skip
    assert report["rows_blank"] == 1 and report["rows_read"] == 40 and report["rows_imported"] == 37
    found = [(e["row"], e["reason"]) for e in report["errors"]]
    assert found == [
        (7, "wrong number of fields"),
        (10, "wrong number of fields"),
        (13, "not a number"),
    ]
    assert report["errors"][0]["detail"] == "expected 7 fields, found 8"


def test_quoted_values_may_hold_delimiters_quotes_and_newlines(r, tenant, settings):
    text = (
        "customer_id,age,address\n"
        'C-1,30,"1 Main St, Apt 2\nSpringfield"\n'
        'C-2,31,"say ""hi"""\n'
        "C-3,old,plain\n"
    )
    report = import_crm(
        r,
        "acme",
        io.BytesIO(text.encode()),
        options=ImportOptions(types={"age": "numeric"}, max_reject_rate=0.5),
        settings=settings,
    )
    assert [(e["row"], e["column"]) for e in report["errors"]] == [(4, "age")]  # the record number
    assert profile(r, tenant, "C-1")["attributes"]["address"] == "1 Main St, Apt 2\nSpringfield"
    assert profile(r, tenant, "C-2")["attributes"]["address"] == 'say "hi"'


def test_a_file_of_ids_only_gives_profiles_without_attributes(r, tenant, settings):
    report = import_crm(
        r,
        "acme",
        io.BytesIO(b"customer_id\nA-1\nA-2\n"),
        io.BytesIO(b"customer_id,product_id\nA-2,p1\n"),
        settings=settings,
    )
    assert report["rows_imported"] == 2 and report["columns"] == [] and report["zip_column"] is None
    assert profile(r, tenant, "A-1") == {
        "customer_hash": tenant.hash_customer_id("A-1"),
        "version": "v1",
        "zip": None,
        "attributes": {},
        "holdings": [],
    }
    assert profile(r, tenant, "A-2")["holdings"] == [
        {"product_id": "p1", "quantity": 1, "since": None}
    ]


# -- encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("utf-16-le", "utf-16-le"),
        ("latin-1", "cp1252"),
        ("cp1252", "cp1252"),
    ],
)
def test_other_encodings_are_detected_and_decoded(
    r, tenant, settings, tmp_path, encoding, expected
):
    data = rows(6)
    data[1][4] = "Zürich Café"
    report = import_crm(
        r, "acme", write(tmp_path, "enc.csv", csv_bytes(data, encoding=encoding)), settings=settings
    )
    assert report["source"]["encoding"] == expected and report["rows_imported"] == 6
    assert profile(r, tenant, "C-001")["attributes"]["segment"] == "Zürich Café"
    assert profile(r, tenant, "C-002")["attributes"]["income"] == 32000
    if expected == "cp1252":
        assert any("not UTF-8" in w and "line 3" in w for w in report["warnings"])


# -- idempotence, versions, rollback -------------------------------------------------------


def test_reimporting_the_same_file_is_a_no_op(r, tenant, settings, tmp_path, v1):
    sid = serving.live_serving_id(r, "acme")
    again = import_crm(r, "acme", io.BytesIO(csv_bytes(rows())), settings=settings)
    assert again["status"] == "unchanged" and again["version"] == "v1"
    assert (
        again["rows_imported"] == v1["rows_imported"]
        and again["content_hash"] == v1["content_hash"]
    )
    assert serving.live_serving_id(r, "acme") == sid
    assert [v["version"] for v in versions_info(r, "acme", settings)["versions"]] == ["v1"]
    derived = import_crm(
        r,
        "acme",
        io.BytesIO(csv_bytes(rows())),
        options=ImportOptions(derive=["inc_per_age=income/age"]),
        settings=settings,
    )
    assert derived["status"] == "imported" and derived["version"] == "v2"


def test_rollback_and_activate_switch_whole_versions(r, tenant, settings, tmp_path, v1):
    import_crm(
        r,
        "acme",
        write(tmp_path, "v2.csv", csv_bytes(rows(25, income_step=5000))),
        settings=settings,
    )
    assert profile(r, tenant, "C-005")["attributes"]["income"] == 55000
    assert profile(r, tenant, "C-022")["version"] == "v2"
    info = versions_info(r, "acme", settings)
    assert info["live_version"] == "v2" and [
        (v["version"], v["live"]) for v in info["versions"]
    ] == [("v2", True), ("v1", False)]
    back = rollback(r, "acme", settings)
    assert back["live_version"] == "v1" and back["previous_version"] == "v2"
    assert profile(r, tenant, "C-005")["version"] == "v1"
    assert profile(r, tenant, "C-005")["attributes"]["income"] == 35000
    assert profile(r, tenant, "C-022") is None  # only in v2
    assert len(serving.namespaces(r, "acme")) == 1
    with pytest.raises(CrmError, match="no CRM version older than v1"):
        rollback(r, "acme", settings)
    forward = activate(r, "acme", "v2", settings)
    assert (
        forward["live_version"] == "v2"
        and profile(r, tenant, "C-022")["attributes"]["income"] == 30000 + 22 * 5000
    )
    with pytest.raises(CrmError, match="no CRM version 'v9'"):
        activate(r, "acme", "v9", settings)


def test_old_versions_are_pruned_beyond_keep(r, tenant, settings):
    for step in (1000, 2000, 3000):
        import_crm(
            r,
            "acme",
            io.BytesIO(csv_bytes(rows(5, income_step=step))),
            options=ImportOptions(keep_versions=2),
            settings=settings,
        )
    assert sorted(p.name for p in (settings.crm_dir / "acme").glob("v*")) == ["v2", "v3"]


def test_a_running_import_blocks_another(r, tenant, settings):
    with TenantLock(r, "acme", 0).held(), pytest.raises(CrmError, match="another CRM import"):
        import_crm(r, "acme", io.BytesIO(csv_bytes(rows(3))), settings=settings)
    assert (
        import_crm(r, "acme", io.BytesIO(csv_bytes(rows(3))), settings=settings)["status"]
        == "imported"
    )


def test_unknown_tenant_and_bad_options_are_clear(r, tenant, settings):
    with pytest.raises(CrmError, match="no tenant named 'nope'"):
        import_crm(r, "nope", io.BytesIO(csv_bytes(rows(3))), settings=settings)
    with pytest.raises(CrmImportError, match="--types names column 'height'"):
        import_crm(
            r,
            "acme",
            io.BytesIO(csv_bytes(rows(3))),
            options=ImportOptions(types={"height": "numeric"}),
            settings=settings,
        )
    with pytest.raises(CrmImportError, match="unknown type 'number'"):
        import_crm(
            r,
            "acme",
            io.BytesIO(csv_bytes(rows(3))),
            options=ImportOptions(types={"age": "number"}),
            settings=settings,
        )


def test_type_overrides_and_skipped_columns(r, tenant, settings):
    header = ["customer_id", "code", "opened", "notes", "postcode"]
    data = [
        [f"C-{i}", f"{i + 10}", f"{i + 1:02d}/02/2021", "private", f"{501 + i}"] for i in range(10)
    ]
    report = import_crm(
        r, "acme", io.BytesIO(csv_bytes(data, header=header)),
        options=ImportOptions(types={"code": "categorical", "opened": "date:dmy", "notes": "skip"}), settings=settings,
    )  # fmt: skip
    assert {c["name"]: (c["type"], c["source"]) for c in report["columns"]} == {
        "code": ("categorical", "declared"),
        "opened": ("date:dmy", "declared"),
    }
    assert report["zip_column"] == "postcode"
    p = profile(r, tenant, "C-3")
    assert p["attributes"] == {"code": "13", "opened": "2021-02-04"} and p["zip"] == "00504"


# -- holdings and derived features ---------------------------------------------------------


def test_holdings_are_grouped_per_customer_and_bad_rows_reported(r, tenant, settings, tmp_path):
    holdings = (
        b"customer_id,product_id,quantity,date\n"
        b"C-001,p1,1,2021-05-01\n"
        b"C-001,p2,2,2020-01-01\n"
        b"C-001,p1,3,2019-03-04\n"
        b"C-003,p9,,\n"
        b"C-999,p1,1,2021-01-01\n"
        b"C-004,,1,2021-01-01\n"
        b"C-004,p2,many,2021-01-01\n"
        b"C-004,p3,1,2021-02-30\n"
    )
    report = import_crm(
        r,
        "acme",
        io.BytesIO(csv_bytes(rows(10))),
        io.BytesIO(holdings),
        options=ImportOptions(max_reject_rate=0.5),
        settings=settings,
    )
    h = report["holdings"]
    assert (
        h["rows_read"],
        h["rows_imported"],
        h["rows_rejected"],
        h["customers_with_holdings"],
    ) == (8, 4, 4, 2)
    assert [(e["row"], e["column"], e["reason"]) for e in h["errors"]] == [
        (6, "customer_id", "unknown customer (not in the customers file)"),
        (7, "product_id", "missing product_id"),
        (8, "quantity", "not a number"),
        (9, "date", "not a date"),
    ]
    held = sorted(profile(r, tenant, "C-001")["holdings"], key=lambda x: x["product_id"])
    assert held == [
        {"product_id": "p1", "quantity": 4, "since": "2019-03-04"},
        {"product_id": "p2", "quantity": 2, "since": "2020-01-01"},
    ]
    assert profile(r, tenant, "C-003")["holdings"] == [
        {"product_id": "p9", "quantity": 1, "since": None}
    ]
    assert profile(r, tenant, "C-004")["holdings"] == []
    table = pq.read_table(settings.crm_dir / "acme" / "v1" / "holdings.parquet")
    assert table.num_rows == 4 and table.column_names == [
        "customer_hash",
        "product_id",
        "quantity",
        "date",
    ]
    assert set(table["customer_hash"].to_pylist()) == {
        tenant.hash_customer_id("C-001"),
        tenant.hash_customer_id("C-003"),
    }


def test_holdings_rows_with_the_wrong_number_of_fields_are_numbered(r, tenant, settings):
    lines = ["customer_id,product_id,quantity"] + [f"C-{i % 10:03d},p{i},1" for i in range(30)]
    lines[5] = "C-004,p4"  # row 6
    lines[20] = "C-009,p19,1,extra"  # row 21
    report = import_crm(
        r,
        "acme",
        io.BytesIO(csv_bytes(rows(10))),
        io.BytesIO(("\n".join(lines) + "\n").encode()),
        settings=settings,
    )
    h = report["holdings"]
    assert [(e["row"], e["reason"]) for e in h["errors"]] == [
        (6, "wrong number of fields"),
        (21, "wrong number of fields"),
    ]
    assert (h["rows_read"], h["rows_imported"]) == (30, 28)
    assert sorted(x["product_id"] for x in profile(r, tenant, "C-009")["holdings"]) == ["p29", "p9"]


def test_holdings_file_without_product_column_is_refused(r, tenant, settings, v1):
    with pytest.raises(CrmImportError, match="no column 'product_id'"):
        import_crm(
            r,
            "acme",
            io.BytesIO(csv_bytes(rows())),
            io.BytesIO(b"customer_id,sku\nC-001,p1\n"),
            settings=settings,
        )
    assert_only_v1_live(r, tenant, settings)


def test_derived_features_are_computed_and_guard_division_by_zero(r, tenant, settings):
    data = rows(6)
    data[2][1] = "0"  # age 0
    report = import_crm(
        r, "acme", io.BytesIO(csv_bytes(data)),
        options=ImportOptions(derive=["income_per_age=income/age", "net=income-1000*2"]),
        settings=settings,
    )  # fmt: skip
    derived = [c for c in report["columns"] if c["source"] == "derived"]
    assert [(c["name"], c["expression"]) for c in derived] == [
        ("income_per_age", "income/age"),
        ("net", "income-1000*2"),
    ]
    assert profile(r, tenant, "C-001")["attributes"]["income_per_age"] == pytest.approx(31000 / 21)
    assert profile(r, tenant, "C-002")["attributes"]["income_per_age"] is None
    assert profile(r, tenant, "C-002")["attributes"]["net"] == 32000 - 2000
    with pytest.raises(CrmImportError, match="'segment', which is categorical"):
        import_crm(
            r,
            "acme",
            io.BytesIO(csv_bytes(data)),
            options=ImportOptions(derive=["x=income/segment"]),
            settings=settings,
        )
    with pytest.raises(CrmImportError, match="only numeric columns"):
        import_crm(
            r,
            "acme",
            io.BytesIO(csv_bytes(data)),
            options=ImportOptions(derive=["x=income**2"]),
            settings=settings,
        )


# -- privacy --------------------------------------------------------------------------------


def _every_redis_byte(r: redis.Redis) -> list[bytes]:
    out: list[bytes] = []
    for key in r.scan_iter():
        out.append(key)
        kind = r.type(key)
        if kind == b"string":
            out.append(r.get(key))
        elif kind == b"hash":
            for f, v in r.hgetall(key).items():
                out += [f, v]
        elif kind == b"set":
            out += list(r.smembers(key))
        elif kind == b"list":
            out += r.lrange(key, 0, -1)
        elif kind == b"zset":
            out += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
    return out


def test_raw_ids_never_reach_redis_or_disk(r, tenant, settings, tmp_path):
    raw_ids = [f"RAWID-Q7X-{i:04d}" for i in range(12)]
    data = [[rid, *row[1:]] for rid, row in zip(raw_ids, rows(12), strict=True)]
    data[5][0] = raw_ids[3]  # a duplicate: reported without quoting the id
    holdings = (
        "customer_id,product_id\n"
        + "".join(f"{rid},p{i}\n" for i, rid in enumerate(raw_ids))
        + "RAWID-Q7X-UNKNOWN,p1\n"
    )
    lenient = ImportOptions(max_reject_rate=0.5)
    customers, held = io.BytesIO(csv_bytes(data)), io.BytesIO(holdings.encode())
    import_crm(r, "acme", customers, held, options=lenient, settings=settings)
    import_crm(
        r, "acme", write(tmp_path, "c.csv", csv_bytes(data[:8])), options=lenient, settings=settings
    )
    rollback(r, "acme", settings)
    assert profile(r, tenant, raw_ids[0])["holdings"] == [
        {"product_id": "p0", "quantity": 1, "since": None}
    ]
    blobs = _every_redis_byte(r)
    assert blobs and not [b for b in blobs if b and b"RAWID-Q7X" in b]
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for p in files:
        assert b"RAWID-Q7X" not in p.read_bytes(), p
        if p.suffix == ".parquet":
            text = str(pq.read_table(p).to_pylist())
            assert "RAWID-Q7X" not in text, p


def test_erasure_removes_a_customer_everywhere_and_keeps_them_out(r, tenant, settings, tmp_path):
    holdings = b"customer_id,product_id\nC-002,p1\nC-003,p2\n"
    import_crm(r, "acme", io.BytesIO(csv_bytes(rows())), io.BytesIO(holdings), settings=settings)
    import_crm(r, "acme", io.BytesIO(csv_bytes(rows(22))), io.BytesIO(holdings), settings=settings)
    gone = tenant.hash_customer_id("C-002")
    receipt = erase_customer(r, settings, "acme", gone)
    assert receipt["serving_profiles_removed"] == 1
    assert receipt["customer_rows_removed"] == 2 and receipt["holding_rows_removed"] == 2
    assert receipt["versions_rewritten"] == ["v1", "v2"]
    assert (
        get_customer(r, "acme", gone) is None
        and profile(r, tenant, "C-003")["holdings"][0]["product_id"] == "p2"
    )
    for version in ("v1", "v2"):
        for name in ("customers.parquet", "holdings.parquet"):
            hashes = pq.read_table(settings.crm_dir / "acme" / version / name)[
                "customer_hash"
            ].to_pylist()
            assert gone not in hashes and tenant.hash_customer_id("C-003") in hashes
    rollback(r, "acme", settings)
    assert get_customer(r, "acme", gone) is None
    report = import_crm(r, "acme", io.BytesIO(csv_bytes(rows(23))), settings=settings)
    assert report["rows_skipped_erased"] == 1 and report["rows_imported"] == 22
    assert get_customer(r, "acme", gone) is None
    assert erase_customer(r, settings, "acme", gone)["customer_rows_removed"] == 0
    with pytest.raises(CrmError, match="not a customer hash"):
        erase_customer(r, settings, "acme", "C-002")


def test_get_customer_sees_a_switch_at_once(r, tenant, settings, v1):
    assert profile(r, tenant, "C-001")["version"] == "v1"  # caches v1's serving id in this process
    import_crm(r, "acme", io.BytesIO(csv_bytes(rows(20, income_step=7000))), settings=settings)
    after = profile(r, tenant, "C-001")
    assert after["version"] == "v2" and after["attributes"]["income"] == 37000
    r.delete(serving.current_key("acme"))
    assert profile(r, tenant, "C-001") is None and current_version(r, "acme") is None
