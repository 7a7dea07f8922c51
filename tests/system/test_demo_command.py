"""`offerwise demo` as `make demo` runs it: the banner comes once the server answers, with the
shop, dashboard and API docs URLs and the admin key; the first start installs the demo tenant
(CRM, traffic, models, campaign), a second start on the same data dir reuses all of it.

The first start is the session's ``demo`` fixture (tests/system/conftest.py), shared with the
browser tests of the shop."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.system.conftest import DEMO_GROUP, Demo

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.xdist_group(DEMO_GROUP)


def test_make_demo_passes_the_port():
    out = subprocess.run(
        ["make", "-n", "demo", "PORT=8123"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "offerwise demo --port 8123" in out


@pytest.mark.timeout(900)
def test_banner_once_listening_and_a_second_start_reuses_the_demo(demo: Demo):
    first = demo.first
    shop = demo.base
    # Printed once the server answers: the shop was there at once (fetched on the banner).
    assert first.first_page is not None
    status, page = first.first_page
    assert status == 200, page[-2000:]
    assert b"Trailhead Outfitters" in page
    banner = first.banner()
    keys = orjson.loads((demo.data_dir / "demo" / "keys.json").read_bytes())
    for line in (f"{shop}/demo/", f"{shop}/dashboard/", f"{shop}/v1/docs", keys["admin_key"]):
        assert line in banner, banner
    assert "people    1200 CRM customers imported" in banner, banner
    assert "models    trained" in banner, banner
    assert "campaign  'Welcome back' running" in banner, banner

    demo.current.stop()
    started = time.monotonic()
    second = demo.start()
    assert second.up.wait(300), second.tail()
    took = time.monotonic() - started
    banner = second.banner()
    assert "people    reused" in banner and "models    reused" in banner, banner
    assert keys["admin_key"] in banner  # the same keys: the shop's pages keep working
    with urllib.request.urlopen(f"{shop}/demo/", timeout=5) as res:
        assert res.status == 200
    print(f"second start: banner after {took:.1f} s")
