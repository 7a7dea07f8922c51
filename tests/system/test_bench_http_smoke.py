"""The HTTP benchmark harness works end to end: a very short run, Ctrl+C cleanup, missing wrk.

These prove the harness (servers, seeding, wrk scripts, checks, report), not the figures: the
runs are a second long on one small gunicorn worker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "bench_http.py"
SMALL = [
    "--duration", "1", "--warmup", "0", "--workers", "1", "--threads", "2",
    "--connections", "4", "--products", "30", "--visitors", "100",
]  # fmt: skip
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk not installed (Debian package wrk)"
)


@needs_wrk
def test_short_run_measures_real_work(tmp_path: Path) -> None:
    out = tmp_path / "http.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), *SMALL, "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    rows = doc["summary"]
    assert set(rows) == {
        "floor", "collect", "recommend", "floor@paced", "collect@paced", "recommend@paced",
    }  # fmt: skip
    for key, row in rows.items():
        assert row["requests"] > 0, key
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0, key
        assert row["p50_ms"] <= row["p99_ms"], key
    assert rows["floor"]["ratio"] == 1.0
    for scenario in ("collect", "recommend"):
        row = rows[scenario]
        assert row["ratio"] == pytest.approx(row["rps"] / rows["floor"]["rps"], abs=1e-3)
        assert row["verdict"] in ("PASS", "FAIL")
        assert (row["verdict"] == "PASS") == (not row["misses"])

    # Every 200 of collect stored 5 events that really reached the tenant's stream.
    collect_runs = [run for run in doc["runs"] if run["scenario"] == "collect"]
    assert len(collect_runs) == 2
    for run in collect_runs:
        check = run["check"]
        assert check["ok"], check
        assert check["expected_200x5"] == run["statuses"]["200"] * 5 > 0
        assert check["accepted_reported"] == check["expected_200x5"]
        assert 0 <= check["stream_added"] - check["expected_200x5"] <= 4 * 5

    # The paced runs offered half the floor's measured throughput.
    assert rows["collect@paced"]["offered_rps"] == pytest.approx(
        0.5 * rows["floor"]["rps"], rel=0.01
    )
    assert "| scenario | load | req/s | p50 ms | p99 ms |" in proc.stdout
    assert "summary collect:" in proc.stdout and "summary recommend:" in proc.stdout


@needs_wrk
def test_interrupt_stops_every_server(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), *SMALL, "--duration", "30", "--out", str(tmp_path / "x.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("servers up") or time.monotonic() > deadline:
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names and "--serve floor" in names and "--serve real" in names
        time.sleep(1)  # let the first wrk run start
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
        assert proc.returncode == 130, rest
        assert "interrupted" in rest
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_missing_wrk_fails_clearly(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty dir: no wrk, no redis-server
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--duration", "1", "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "wrk not found" in proc.stderr and "apt-get install -y wrk" in proc.stderr
    assert not (tmp_path / "x.json").exists()
