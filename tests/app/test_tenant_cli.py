"""``offerwise tenant create``: the keys as JSON on stdout, and a warning when browsers would be
refused."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from app.cli import cli


def create(*args: str):
    return CliRunner().invoke(cli, ["tenant", "create", *args], catch_exceptions=False)


def test_a_tenant_without_origin_is_created_with_a_warning_naming_the_fix(r):
    result = create("acme")
    assert result.exit_code == 0
    assert set(orjson.loads(result.stdout)) == {"tenant", "site_key", "admin_key"}
    assert "no allowed origin" in result.stderr
    assert "offerwise tenant update acme --origin https://" in result.stderr


def test_a_tenant_with_an_origin_gets_no_warning(r):
    result = create("acme", "--origin", "https://shop.example")
    assert result.exit_code == 0 and result.stderr == ""
    assert orjson.loads(result.stdout)["tenant"] == "acme"
