"""The one-table benchmark's Redis Cluster rows work end to end on a tiny world: the bench starts
its own local cluster (3 masters, 3 replicas) and a queue server, seeds both tenants through the
cluster client, and every scenario and pipeline row of the cluster shows a figure.

It proves the harness on a cluster (seeding, training, servers on ``redis+cluster://``, wrk
scripts, checks, Redis CPU over every node, table), not the figures. The bench's cluster is its
own, so this needs no session cluster; it runs with ``make test-cluster``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_table.py"
TINY = [
    "--cluster-only", "--rounds", "1", "--duration", "1", "--warmup", "0", "--prewarm", "1",
    "--workers", "1", "--threads", "2", "--connections", "4", "--wrk-threads", "1",
    "--customers", "200", "--visitors", "200", "--soak", "0", "--quick-train", "--no-paced",
]  # fmt: skip

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (Debian package wrk)")
def test_a_tiny_cluster_run_fills_the_cluster_rows(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), *TINY, "--out", str(out)],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["rows"] == {}  # --cluster-only
    cluster = doc["cluster"]
    rows = cluster["rows"]
    assert set(rows) == {"floor", "collect", "recommend_identified", "recommend_anonymous"}
    for name, row in rows.items():
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0 and row["checks_ok"], name
        assert row["rps"] > 0 and row["p99_ms"] > 0, name
        if name != "floor":
            assert row["redis_cpu_us_per_req"] > 0 and row["cpu_ratio"] is not None, name
    # The identified visitors were answered by the trained champion, not popularity.
    assert rows["recommend_identified"]["model_share"] > 0.9
    assert cluster["pipeline"]["events"] > 0 and cluster["pipeline"]["bytes_per_event"] > 0
    assert cluster["nodes"]["masters"] == 3 and len(cluster["nodes"]["master_addresses"]) == 3
    # Redis's command statistics came from every master, not the client's default node: the
    # collect script runs on the collect tenant's shard, whichever node that is.
    collect = next(r for r in cluster["runs"] if r["scenario"] == "collect" and r["mode"] == "max")
    assert any(name.startswith(("evalsha", "fcall", "eval")) for name in collect["redis_commands"])
    table = doc["markdown"]
    for label in ("`POST /v1/collect`, 5 events", "identified, 20-product champion",
                  "anonymous (half new)", "events into the stream",
                  "events into the Parquet archive"):  # fmt: skip
        line = next((ln for ln in table.splitlines()
                     if ln.startswith("| Redis Cluster 3+3: ") and label in ln), None)  # fmt: skip
        assert line is not None, f"no cluster row for {label!r}:\n{table}"
        assert re.search(r"\| \d+( events/s)? \|", line), line
    assert "| one Redis server | not measured in this run" in table
    assert "not measured | | | | | | | | run with" not in table
