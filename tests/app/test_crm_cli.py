"""``offerwise crm``: thin commands over the domain, JSON out, clear errors and exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from app.cli import cli
from store.tenants import create_tenant


@pytest.fixture
def runner(r) -> CliRunner:
    create_tenant(r, "acme")
    return CliRunner()


def run(runner: CliRunner, *args: str):
    return runner.invoke(cli, ["crm", *args], catch_exceptions=False)


def customers(tmp_path: Path, name: str, incomes: list[str]) -> Path:
    path = tmp_path / name
    lines = ["customer_id;income;zip;joined"]
    lines += [f"K{i};{inc};{501 + i};0{1 + i % 9}/15/2022" for i, inc in enumerate(incomes)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_show_versions_rollback(runner, tmp_path):
    holdings = tmp_path / "holdings.csv"
    holdings.write_text("customer_id\tproduct_id\tquantity\nK1\tp7\t2\n")
    first = run(
        runner, "import", "--tenant", "acme", str(customers(tmp_path, "a.csv", ["100", "200", "300"])),
        "--holdings", str(holdings), "--derive", "income_k=income/1000", "--types", "joined=date:mdy",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    report = orjson.loads(first.stdout)
    assert (
        report["status"] == "imported" and report["version"] == "v1" and report["delimiter"] == ";"
    )
    assert report["holdings"]["rows_imported"] == 1
    shown = orjson.loads(run(runner, "show", "--tenant", "acme", "--customer-id", "K1").stdout)
    assert shown["zip"] == "00502" and shown["attributes"] == {
        "income": 200,
        "joined": "2022-02-15",
        "income_k": 0.2,
    }
    assert shown["holdings"] == [{"product_id": "p7", "quantity": 2, "since": None}]
    by_hash = run(runner, "show", "--tenant", "acme", "--customer-hash", shown["customer_hash"])
    assert orjson.loads(by_hash.stdout) == shown

    second = run(
        runner, "import", "--tenant", "acme", str(customers(tmp_path, "b.csv", ["1", "2", "3"]))
    )
    assert orjson.loads(second.stdout)["version"] == "v2"
    listed = orjson.loads(run(runner, "versions", "--tenant", "acme").stdout)
    assert [(v["version"], v["live"], v["rows_imported"]) for v in listed["versions"]] == [
        ("v2", True, 3),
        ("v1", False, 3),
    ]
    back = run(runner, "rollback", "--tenant", "acme")
    assert back.exit_code == 0 and orjson.loads(back.stdout)["live_version"] == "v1"
    assert (
        orjson.loads(run(runner, "show", "--tenant", "acme", "--customer-id", "K2").stdout)[
            "attributes"
        ]["income"]
        == 300
    )
    again = run(runner, "rollback", "--tenant", "acme")
    assert again.exit_code == 2 and "no CRM version older than v1" in again.stderr
    forward = run(runner, "activate", "--tenant", "acme", "--version", "v2")
    assert orjson.loads(forward.stdout)["live_version"] == "v2"


def test_refused_file_prints_the_report_and_exits_1(runner, tmp_path):
    good = run(
        runner,
        "import",
        "--tenant",
        "acme",
        str(customers(tmp_path, "a.csv", ["100", "200", "300"])),
    )
    assert good.exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("id;income\n1;2\n")
    result = run(runner, "import", "--tenant", "acme", str(bad))
    assert result.exit_code == 1
    assert "no id column 'customer_id'" in result.stderr and "v1 is still live" in result.stderr
    report = orjson.loads(result.stdout)
    assert report["status"] == "rejected" and report["live_version"] == "v1"
    strict = run(
        runner, "import", "--tenant", "acme", str(customers(tmp_path, "c.csv", [str(i) for i in range(30)] + ["lots"])),
        "--max-reject-rate", "0", "--types", "income=numeric",
    )  # fmt: skip
    assert strict.exit_code == 1 and orjson.loads(strict.stdout)["errors"][0]["row"] == 32


def test_rejected_rows_exit_3_with_the_report(runner, tmp_path):
    """The version goes live with the good rows; exit 3 tells a script that some were left out."""
    incomes = [str(i) for i in range(30)] + ["lots"]
    path = customers(tmp_path, "a.csv", incomes)
    result = run(runner, "import", "--tenant", "acme", str(path), "--types", "income=numeric")
    assert result.exit_code == 3, result.stderr
    report = orjson.loads(result.stdout)
    assert report["status"] == "imported" and report["live_version"] == "v1"
    assert report["rows_rejected"] == 1 and report["errors"][0]["row"] == 32
    assert "1 row(s) rejected" in result.stderr
    holdings = tmp_path / "holdings.csv"
    rows = [f"K{i},p1" for i in range(20)] + ["NOBODY,p1"]
    holdings.write_text("customer_id,product_id\n" + "\n".join(rows) + "\n")
    clean = customers(tmp_path, "b.csv", [str(i) for i in range(30)])
    result = run(runner, "import", "--tenant", "acme", str(clean), "--holdings", str(holdings))
    report = orjson.loads(result.stdout)
    assert result.exit_code == 3 and report["rows_rejected"] == 0, result.stderr
    assert report["holdings"]["rows_rejected"] == 1 and report["version"] == "v2"
    result = run(runner, "import", "--tenant", "acme", str(clean))
    assert result.exit_code == 0 and orjson.loads(result.stdout)["version"] == "v3"


def test_usage_errors_are_clear(runner, tmp_path):
    path = customers(tmp_path, "a.csv", ["1"])
    for args, message in [
        (["import", "--tenant", "nope", str(path)], "no tenant named 'nope'"),
        (
            ["import", "--tenant", "acme", str(path), "--types", "income"],
            "must look like column=type",
        ),
        (
            ["import", "--tenant", "acme", str(path), "--derive", "x=income^2"],
            "derived feature 'x'",
        ),
        (["show", "--tenant", "acme"], "exactly one of --customer-id or --customer-hash"),
        (["versions", "--tenant", "nope"], "no tenant named 'nope'"),
    ]:
        result = run(runner, *args)
        assert result.exit_code in (1, 2) and message in result.stderr, (args, result.stderr)
    missing = run(runner, "show", "--tenant", "acme", "--customer-id", "K1")
    assert missing.exit_code == 1 and "no customer" in missing.stderr
