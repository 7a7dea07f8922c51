"""`offerwise demo` as `make demo` runs it: the banner comes once the server answers, with the
shop, dashboard and API docs URLs and the admin key; the first start installs the demo tenant
(CRM, traffic, models, campaign), a second start on the same data dir reuses all of it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.helpers import free_port
from tests.synth_world import base_artifacts

CLI = str(Path(sys.executable).with_name("offerwise"))
REPO = Path(__file__).resolve().parents[2]


def _start(env: dict, port: int, cwd: Path) -> tuple[subprocess.Popen, list[str], threading.Event]:
    proc = subprocess.Popen(
        [CLI, "demo", "--port", str(port), "--no-worker", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
    )  # fmt: skip
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                up.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, lines, up


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _banner(lines: list[str]) -> str:
    text = "".join(lines)
    return text[text.index("Offerwise demo is up") :]


def test_make_demo_passes_the_port():
    out = subprocess.run(
        ["make", "-n", "demo", "PORT=8123"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "offerwise demo --port 8123" in out


@pytest.mark.timeout(900)
def test_banner_once_listening_and_a_second_start_reuses_the_demo(shared_data, geo_dir, tmp_path):
    # The ZIP table and segments of the test suite, as `make demo` leaves them after a first
    # start; the demo is pointed at the same table, so it has nothing to load again.
    base = base_artifacts(shared_data, geo_dir, tmp_path.parent)
    shutil.copytree(base / "artifacts", tmp_path / "var" / "artifacts")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        OFFERWISE_DATA_DIR=str(tmp_path / "var"),
        OFFERWISE_GEO_DIR=str(geo_dir),
        OFFERWISE_DEMOGRAPHICS=str(shared_data / "zcta_demographics.csv"),
    )
    port = free_port()
    shop = f"http://127.0.0.1:{port}"
    proc, lines, up = _start(env, port, tmp_path)
    try:
        assert up.wait(600), "".join(lines[-30:])
        # Printed once the server answers: the shop is there at once.
        with urllib.request.urlopen(f"{shop}/demo/", timeout=5) as res:
            assert res.status == 200
            assert b"Trailhead Outfitters" in res.read()
        banner = _banner(lines)
        keys = orjson.loads((tmp_path / "var" / "demo" / "keys.json").read_bytes())
        for line in (f"{shop}/demo/", f"{shop}/dashboard/", f"{shop}/v1/docs", keys["admin_key"]):
            assert line in banner, banner
        assert "people    1200 CRM customers imported" in banner, banner
        assert "models    trained" in banner, banner
        assert "campaign  'Welcome back' running" in banner, banner
    finally:
        _stop(proc)

    started = time.monotonic()
    proc, lines, up = _start(env, port, tmp_path)
    try:
        assert up.wait(300), "".join(lines[-30:])
        second = time.monotonic() - started
        banner = _banner(lines)
        assert "people    reused" in banner and "models    reused" in banner, banner
        assert keys["admin_key"] in banner  # the same keys: the shop's pages keep working
        with urllib.request.urlopen(f"{shop}/demo/", timeout=5) as res:
            assert res.status == 200
        print(f"second start: banner after {second:.1f} s")
    finally:
        _stop(proc)
