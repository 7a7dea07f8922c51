"""The campaign benchmarks' harnesses work end to end on a real serve (short runs: they prove
what the scripts measure, not the figures)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_triggers import TRIGGERS, run_triggers, table
from bench.live_server import live_server

ROOT = Path(__file__).resolve().parents[2]


def test_a_trigger_shows_its_offer_in_the_very_next_answer():
    with live_server(workers=2) as server:
        samples = run_triggers(server, visitors=8, threads=4)
    assert {s.trigger for s in samples} == set(TRIGGERS)
    # The window opens in the collect's own script call: no polling, whatever the load.
    assert all(s.latency_s is not None and s.attempts == 1 for s in samples), samples
    text, _ = table(samples)
    assert all(t in text for t in TRIGGERS) and "p99 ms" in text


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (Debian package wrk)")
def test_bench_http_campaign_rows_measure_campaigns(tmp_path: Path):
    out = tmp_path / "http.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_http.py"), "--duration", "1", "--warmup",
         "0", "--workers", "1", "--threads", "2", "--connections", "4", "--products", "30",
         "--visitors", "100", "--no-paced", "--scenarios", "floor,recommend", "--campaigns", "3",
         "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["summary"]) == {"floor", "recommend", "recommend+campaigns"}
    row = doc["summary"]["recommend+campaigns"]
    assert row["requests"] > 0 and row["non_2xx"] == 0 and row["vs_plain"] > 0
    (run,) = [r for r in doc["runs"] if r["scenario"] == "recommend+campaigns"]
    # Nearly every answer applied the broad campaign (all but the 5% tenant-wide holdout).
    assert run["check"]["ok"] and run["check"]["broad_campaign_share"] > 0.5
    assert "campaigns' cost, recommend:" in proc.stdout
