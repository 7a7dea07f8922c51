"""``offerwise events import``: analytics history in the collect shape, validated like collect,
deduplicated by (visitor, event id), written into the archive by the archiver itself."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from app.cli import cli
from clickstream.archiver import read_archive
from clickstream.history_import import HistoryImportError, import_history
from store import keys
from store.tenants import create_tenant, get_tenant

DAY_MS = 86_400_000


@pytest.fixture
def tenant(r):
    create_tenant(r, "acme")
    return get_tenant(r, "acme")


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text(
        "id,type,ts,visitor,product_id,customer_id,quantity,price\n" + "\n".join(rows) + "\n"
    )
    return path


def test_csv_history_is_validated_deduplicated_and_archived(r, settings, tenant, tmp_path):
    now = int(time.time() * 1000)
    t0 = now - 60 * DAY_MS
    path = _csv(tmp_path / "history.csv", [
        f"e1,identify,{t0},v1,,CRM-7,,",
        f"e2,product_view,{t0 + 1000},v1,p1,,,",
        f"e3,purchase,{t0 + DAY_MS},v1,p1,,2,19.5",
        f"e2,product_view,{t0 + 1000},v1,p1,,,",  # the same event twice in the file
        f"e4,product_view,{t0 + 2000},v1,,,,",  # row 5: no product_id
        f"e5,page_view,{(t0 + 2000) // 1000},v1,,,,",  # row 6: seconds, not milliseconds
        f"e6,teleport,{t0},v1,,,,",  # row 7: unknown type
        f"e7,page_view,{t0},bad visitor!,,,,",  # row 8: a visitor id collect would refuse
        "e8,product_view,2026-01-02T03:04:05Z,v2,p2,,,",  # ISO 8601 is fine too
    ])  # fmt: skip
    report = import_history(r, settings.events_dir, tenant, path).to_dict()
    assert (report["rows"], report["imported"], report["duplicates"], report["rejected"]) == (
        9,
        4,
        1,
        4,
    )
    by_row = {e["row"]: (e["field"], e["id"]) for e in report["errors"]}
    assert by_row == {5: ("product_id", "e4"), 6: ("ts", "e5"), 7: ("type", "e6"),
                      8: ("visitor", "e7")}  # fmt: skip
    assert report["archived_batches"] >= 1
    assert r.xlen(keys.event_stream("acme")) == 0  # all moved into the archive

    table = read_archive(settings.events_dir, "acme").to_pylist()
    got = {row["id"]: row for row in table}
    assert set(got) == {"e1", "e2", "e3", "e8"}
    assert int(got["e3"]["ts"].timestamp() * 1000) == t0 + DAY_MS  # the event's own time
    assert got["e3"]["quantity"] == 2 and got["e3"]["price"] == 19.5
    # received now: server_ts is the import time, the partition today's
    assert abs(got["e3"]["server_ts"].timestamp() * 1000 - now) < 600_000
    assert got["e1"]["customer"] == tenant.hash_customer_id("CRM-7")
    assert "CRM-7" not in orjson.dumps([str(v) for row in table for v in row.values()]).decode()
    assert got["e8"]["ts"].isoformat().startswith("2026-01-02T03:04:05")

    again = import_history(r, settings.events_dir, tenant, path).to_dict()
    assert again["imported"] == 0 and again["duplicates"] == 5 and again["rejected"] == 4
    assert len(read_archive(settings.events_dir, "acme")) == 4


def test_parquet_with_timestamp_columns(r, settings, tenant, tmp_path):
    now = int(time.time() * 1000)
    path = tmp_path / "history.parquet"
    pq.write_table(pa.table({
        "id": ["a", "b"], "type": ["product_view", "purchase"], "visitor": ["v9", "v9"],
        "product_id": ["p1", "p1"],
        "ts": pa.array([now - 5 * DAY_MS, now - DAY_MS], pa.timestamp("ms", tz="UTC")),
    }), path)  # fmt: skip
    report = import_history(r, settings.events_dir, tenant, path)
    assert report.imported == 2 and report.rejected == 0
    rows = read_archive(settings.events_dir, "acme").to_pylist()
    assert sorted(int(x["ts"].timestamp() * 1000) for x in rows) == [now - 5 * DAY_MS, now - DAY_MS]


def test_a_file_without_the_event_columns_is_refused(r, settings, tenant, tmp_path):
    path = tmp_path / "nope.csv"
    path.write_text("id,type,product_id\ne1,page_view,\n")
    with pytest.raises(HistoryImportError, match="missing column"):
        import_history(r, settings.events_dir, tenant, path)


def test_cli_exit_codes(r, settings, tenant, tmp_path):
    now = int(time.time() * 1000)
    good = _csv(tmp_path / "good.csv", [f"g1,page_view,{now - DAY_MS},v1,,,,"])
    bad = _csv(
        tmp_path / "bad.csv", [f"b1,page_view,{now - DAY_MS},v1,,,,", "b2,purchase,x,v1,,,,"]
    )
    runner = CliRunner()
    ok = runner.invoke(cli, ["events", "import", "--tenant", "acme", str(good)])
    assert ok.exit_code == 0, ok.output
    assert orjson.loads(ok.stdout)["imported"] == 1
    partial = runner.invoke(cli, ["events", "import", "--tenant", "acme", str(bad)])
    assert partial.exit_code == 3
    out = orjson.loads(partial.stdout)
    assert out["imported"] == 1 and out["errors"][0]["row"] == 2
    assert out["errors"][0]["field"] in ("ts", "product_id")
    refused = tmp_path / "refused.csv"
    refused.write_text("id,type\n")
    assert runner.invoke(cli, ["events", "import", "--tenant", "acme", str(refused)]).exit_code == 2
    assert runner.invoke(cli, ["events", "import", "--tenant", "ghost", str(good)]).exit_code == 2


def test_erased_people_are_not_brought_back(r, settings, tenant, tmp_path):
    """An erasure is remembered as keyed hashes; the tenant's older analytics export that still
    names the person imports everyone else."""
    from models.erasure import erase_person

    erase_person(r, settings, tenant, customer_id="CRM-9")
    erase_person(r, settings, tenant, visitor_id="gone")
    members = {m.decode() for m in r.smembers(keys.erased_people("acme"))}
    assert members and not any("CRM-9" in m or "gone" in m for m in members)  # no raw id kept
    t0 = int(time.time() * 1000) - 30 * DAY_MS
    path = _csv(tmp_path / "history.csv", [
        f"e1,identify,{t0},v9,,CRM-9,,",  # the erased customer, on another device
        f"e2,product_view,{t0 + 1000},gone,p1,,,",  # the erased visitor
        f"e3,product_view,{t0 + 2000},v3,p1,,,",  # someone else
    ])  # fmt: skip
    report = import_history(r, settings.events_dir, tenant, path).to_dict()
    assert (report["imported"], report["rejected"]) == (1, 2)
    assert {(e["row"], e["field"]) for e in report["errors"]} == {(1, "visitor"), (2, "visitor")}
    assert [row["id"] for row in read_archive(settings.events_dir, "acme").to_pylist()] == ["e3"]
