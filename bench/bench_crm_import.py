"""Benchmark: import a 1,000,000 customers x 40 columns CRM extract (plus holdings).

Generates the files in a temporary folder, starts a private redis-server on a free port, and runs
the import in a child process so that its peak RSS is the import's own (not the generator's).
Prints rows/s, total seconds, peak RSS, Redis memory and get_customer latency, and a one-line
summary against the targets (under 120 s and under 2 GB peak for 1M x 40).

    .venv/bin/python bench/bench_crm_import.py [--rows 1000000] [--holdings-per-customer 2.5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SECONDS = 120.0
TARGET_RSS_MB = 2048.0
N_NUMERIC, N_CATEGORICAL, N_DATES, N_BOOLEANS = 26, 8, 2, 2  # + id + zip = 40 columns


def generate(
    folder: Path, rows: int, holdings_per_customer: float, seed: int = 7
) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    customers, holdings = folder / "customers.csv", folder / "holdings.csv"
    chunk = 100_000
    cats = [np.array([f"c{j}_{k}" for k in range(12)]) for j in range(N_CATEGORICAL)]
    with pacsv.CSVWriter(customers, _customer_schema()) as out:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = np.arange(start, start + n)
            cols = {
                "customer_id": pa.array([f"CUST{i:08d}" for i in ids]),
                "zip": pa.array([f"{z:05d}" for z in rng.integers(501, 99950, n)]),
            }
            for j in range(N_NUMERIC):
                cols[f"num_{j}"] = pa.array(np.round(rng.gamma(2.0, 50.0 * (j + 1), n), 2))
            for j in range(N_CATEGORICAL):
                cols[f"cat_{j}"] = pa.array(cats[j][rng.integers(0, 12, n)])
            for j in range(N_DATES):
                days = rng.integers(0, 365 * 20, n).astype("int32") + 10957
                cols[f"date_{j}"] = pa.array(days, pa.int32()).cast(pa.date32())
            for j in range(N_BOOLEANS):
                cols[f"flag_{j}"] = pa.array(np.where(rng.random(n) < 0.3, "yes", "no"))
            out.write_table(pa.table(cols, schema=_customer_schema()))
    total = int(rows * holdings_per_customer)
    with pacsv.CSVWriter(
        holdings,
        pa.schema(
            [("customer_id", pa.string()), ("product_id", pa.string()), ("quantity", pa.int64())]
        ),
    ) as out:
        for start in range(0, total, chunk * 2):
            n = min(chunk * 2, total - start)
            owners = rng.integers(0, rows, n)
            out.write_table(
                pa.table(
                    {
                        "customer_id": pa.array([f"CUST{i:08d}" for i in owners]),
                        "product_id": pa.array([f"P{p:03d}" for p in rng.integers(0, 60, n)]),
                        "quantity": pa.array(rng.integers(1, 4, n)),
                    }
                )
            )
    return customers, holdings


def _customer_schema():
    import pyarrow as pa

    fields = [("customer_id", pa.string()), ("zip", pa.string())]
    fields += [(f"num_{j}", pa.float64()) for j in range(N_NUMERIC)]
    fields += [(f"cat_{j}", pa.string()) for j in range(N_CATEGORICAL)]
    fields += [(f"date_{j}", pa.date32()) for j in range(N_DATES)]
    fields += [(f"flag_{j}", pa.string()) for j in range(N_BOOLEANS)]
    return pa.schema(fields)


def run_import(redis_url: str, customers: str, holdings: str | None) -> None:
    """Child process: one import, then lookups; prints a JSON line."""
    import random

    import redis

    from enrichment.crm import ImportOptions, get_customer, import_crm
    from store.tenants import get_tenant

    r = redis.Redis.from_url(redis_url)
    redis_cpu = _redis_cpu(r)
    cpu0 = time.process_time()
    started = time.perf_counter()
    report = import_crm(
        r, "bench", customers, holdings, options=ImportOptions(derive=["ratio=num_1/num_2"])
    )
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    redis_cpu = _redis_cpu(r) - redis_cpu
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tenant = get_tenant(r, "bench")
    ids = [
        tenant.hash_customer_id(f"CUST{random.randrange(report['rows_imported']):08d}")
        for _ in range(2000)
    ]
    t0 = time.perf_counter()
    found = sum(get_customer(r, "bench", h) is not None for h in ids)
    lookup_us = (time.perf_counter() - t0) / len(ids) * 1e6
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "redis_cpu_seconds": redis_cpu,
                "load_average": os.getloadavg()[0],
                "peak_rss_mb": peak_kb / 1024,
                "rows_imported": report["rows_imported"],
                "rows_rejected": report["rows_rejected"],
                "holdings_imported": (report.get("holdings") or {}).get("rows_imported"),
                "columns": len(report["columns"]),
                "lookup_us": lookup_us,
                "lookups_found": found,
                "redis_used_mb": r.info("memory")["used_memory"] / 2**20,
            }
        )
    )


def _redis_cpu(r) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--holdings-per-customer", type=float, default=2.5)
    parser.add_argument(
        "--child", nargs=3, metavar=("REDIS_URL", "CUSTOMERS", "HOLDINGS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        run_import(args.child[0], args.child[1], args.child[2] if args.child[2] != "-" else None)
        return

    import redis

    from bench.private_redis import start_private_redis
    from store.tenants import create_tenant

    tmp = Path(tempfile.mkdtemp(prefix="bench-crm-"))
    proc = None
    try:
        t0 = time.perf_counter()
        customers, holdings = generate(tmp, args.rows, args.holdings_per_customer)
        gen_s = time.perf_counter() - t0
        print(
            f"generated {args.rows:,} customers x 40 columns ({customers.stat().st_size / 2**20:.0f} MB) "
            f"and {int(args.rows * args.holdings_per_customer):,} holdings ({holdings.stat().st_size / 2**20:.0f} MB) in {gen_s:.1f} s"
        )
        proc, url = start_private_redis(tmp)
        r = redis.Redis.from_url(url)
        create_tenant(r, "bench")
        env = {**os.environ, "REDIS_URL": url, "OFFERWISE_DATA_DIR": str(tmp / "var")}
        child = subprocess.run(
            [sys.executable, __file__, "--child", url, str(customers), str(holdings if args.holdings_per_customer > 0 else "-")],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if child.returncode != 0:
            print(child.stdout, child.stderr, file=sys.stderr)
            sys.exit(1)
        m = json.loads(child.stdout.strip().splitlines()[-1])
        rate = m["rows_imported"] / m["seconds"]
        print(
            f"imported {m['rows_imported']:,} customers ({m['rows_rejected']} rejected), {m['holdings_imported']:,} holdings, "
            f"{m['columns']} attribute columns"
        )
        print(
            f"total {m['seconds']:.1f} s, {rate:,.0f} rows/s, peak RSS {m['peak_rss_mb']:.0f} MB, "
            f"Redis used memory {m['redis_used_mb']:.0f} MB, get_customer {m['lookup_us']:.0f} us ({m['lookups_found']}/2000 found)"
        )
        print(
            f"CPU: import process {m['cpu_seconds']:.1f} s, redis-server {m['redis_cpu_seconds']:.1f} s "
            f"(machine load average {m['load_average']:.1f} on {os.cpu_count()} cores: wall time grows with it)"
        )
        scale = 1_000_000 / max(args.rows, 1)
        print(
            f"SUMMARY crm import {args.rows:,} x 40: {m['seconds']:.1f} s vs target {TARGET_SECONDS / scale:.0f} s "
            f"(ratio {m['seconds'] / (TARGET_SECONDS / scale):.2f}), peak RSS {m['peak_rss_mb']:.0f} MB vs target "
            f"{TARGET_RSS_MB:.0f} MB (ratio {m['peak_rss_mb'] / TARGET_RSS_MB:.2f})"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
