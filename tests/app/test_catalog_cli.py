"""``offerwise catalog import``: the report on stdout, and an exit code a script can read."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from app.cli import cli
from store.tenants import create_tenant

HEADER = "product_id,name,category,price\n"


@pytest.fixture
def runner(r) -> CliRunner:
    create_tenant(r, "acme")
    return CliRunner()


def run(runner: CliRunner, path: Path, tenant: str = "acme"):
    return runner.invoke(
        cli, ["catalog", "import", "--tenant", tenant, str(path)], catch_exceptions=False
    )


def test_every_row_imported_exits_0(runner, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(HEADER + "a1,Alpha,tools,10\na2,Beta,tools,12\n")
    result = run(runner, path)
    assert result.exit_code == 0 and result.stderr == ""
    assert orjson.loads(result.stdout)["rows_imported"] == 2


def test_rejected_rows_exit_3_and_the_report_says_which(runner, r, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(HEADER + "a1,Alpha,tools,10\na2,,tools,12\na3,Gamma,tools,abc\n")
    result = run(runner, path)
    assert result.exit_code == 3, result.stderr
    report = orjson.loads(result.stdout)
    assert report["rows_imported"] == 1 and report["rows_rejected"] == 2
    assert {(e["row"], e["column"]) for e in report["errors"]} == {(3, "name"), (4, "price")}
    assert "2 row(s) rejected" in result.stderr


def test_nothing_imported_exits_2(runner, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(HEADER + "a1,Alpha,tools,10\n")
    assert run(runner, path, tenant="nobody").exit_code == 2
