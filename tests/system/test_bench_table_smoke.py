"""The one-table benchmark works end to end on a tiny world: a trained champion served to
identified visitors, every row measured, the soak's RSS samples and its error count.

It proves the harness (seeding, training, campaigns, wrk scripts, checks, soak, table), not
the figures: runs of a second on one small gunicorn worker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_table.py"
SMALL = [
    "--rounds", "1", "--duration", "1", "--warmup", "0", "--prewarm", "2",
    "--workers", "1", "--threads", "2", "--connections", "4", "--wrk-threads", "1",
    "--customers", "400", "--soak", "6", "--soak-sample", "1", "--rss-slack-mb", "64",
    # Small tenants and the demo's quick training: seeding 2 x 3,000 simulated visitors and the
    # table's own cross-validated training took most of the test's time; the rows need traffic
    # and a promoted champion, not their size.
    "--visitors", "300", "--quick-train",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (Debian package wrk)")
def test_a_tiny_run_fills_every_row(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), *SMALL, "--out", str(out)],
        capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert set(rows) == {"floor", "collect", "recommend_identified", "recommend_anonymous"}
    for name, row in rows.items():
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0 and row["checks_ok"], name
        assert row["rps"] > 0 and row["cpu_ratio"] is not None, name
    # The identified visitors were answered by the trained champion, not popularity.
    assert rows["recommend_identified"]["model_share"] > 0.9
    assert doc["pipeline"]["events"] > 0 and doc["pipeline"]["bytes_per_event"] > 0
    assert doc["memory"]["mean_bytes"] > 0 and doc["memory"]["crm"]["bytes_per_customer"] > 0
    soak = doc["soak"]
    assert soak["ok"] and not soak["errors"] and soak["rss_mb"]["workers"] == 1
    assert len(soak["rss_mb"]["samples"]) >= 3
    assert "| the same on a local Redis Cluster | not measured |" in doc["markdown"]
    assert "identified, 20-product champion" in proc.stdout
