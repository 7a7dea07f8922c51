"""Benchmark: `offerwise score` on a 1,000,000-customer file streams through in bounded memory.

Issue 4 item 7: ``offerwise score --tenant T customers.csv --holdings holdings.csv --out
scores.csv`` writes one row per input customer, and a file of a million customers streams
through in bounded memory. Set-up goes through the real path (private redis-server on a free
port, ZIP demographics and segments loaded from the shared data, a synthetic tenant installed
and a champion trained and registered with ``train_and_register``). The customers file is the
tenant's CRM extract resampled with new ids (the first rows are the tenant's own customers,
unchanged; every other row copies a random customer's attributes and holdings), so it is
exactly the input the model was trained on.

The CLI runs in a child process, as a user would run it, once on a tiny file (the start-up
floor), once on a 10x smaller file and once on the full file, then on the two larger files
without holdings (``score`` reads the holdings file whole, so these show the customers stream
alone); its peak RSS is the kernel's ``ru_maxrss`` of that process (``os.wait4``), and RSS
polled during the run gives the peak of each half. Bounded memory shows as the peak staying
nearly flat while the rows grow 10x, and as the second half of a run peaking no higher than
the first. The output is then checked: exactly one row per input row, ids
in input order, one ``score_<product>`` column per product, every score in [0, 1], and spot
rows equal to the real-time scores of the same customer (``live_vector`` of the CRM record in
Redis); any mismatch exits 1. Results go to ``bench/results/batch_scoring.json`` (ignored by
git).

    .venv/bin/python bench/bench_batch_scoring.py [--customers 1000000] [--small 100000]
        [--tenant-customers 20000] [--products 20] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child_processes import die_with_parent
from bench.shared_data import shared_data, writable_geonames

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "batch_scoring.json"
TENANT = "bench"
FLOOR_ROWS = 1_000
WRITE_CHUNK = 100_000
ATOL = 2e-6  # batch scores are written rounded to 6 decimals


class BenchError(RuntimeError):
    pass


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# ------------------------------------------------------------------------------ input files
def sources(n_rows: int, n_tenant: int, seed: int = 3):
    """Row -> index of the tenant customer it copies: the tenant's own first, then random."""
    import numpy as np

    head = np.arange(min(n_rows, n_tenant))
    tail = np.random.default_rng(seed).integers(0, n_tenant, max(n_rows - n_tenant, 0))
    return np.concatenate([head, tail])


def row_ids(start: int, stop: int, width: int) -> list[str]:
    return [f"C{i:0{width}d}" for i in range(start, stop)]


def write_inputs(folder: Path, name: str, data, src, width: int) -> tuple[Path, Path, int]:
    """``<name>_customers.csv`` and ``<name>_holdings.csv`` for the rows ``src`` (streamed)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    n_tenant = data.customers.num_rows
    index = {cid: i for i, cid in enumerate(data.customer_ids)}
    h_owner = np.array([index[c] for c in data.holdings.column("customer_id").to_pylist()])
    order = np.argsort(h_owner, kind="stable")
    h_products = np.asarray(data.holdings.column("product_id").to_pylist(), dtype=object)[order]
    counts = np.bincount(h_owner, minlength=n_tenant)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    customers, holdings = folder / f"{name}_customers.csv", folder / f"{name}_holdings.csv"
    hold_schema = pa.schema(
        [("customer_id", pa.string()), ("product_id", pa.string()), ("quantity", pa.float64())]
    )
    n_holdings = 0
    with (
        pacsv.CSVWriter(customers, data.customers.schema) as c_out,
        pacsv.CSVWriter(holdings, hold_schema) as h_out,
    ):
        for a in range(0, len(src), WRITE_CHUNK):
            s = src[a : a + WRITE_CHUNK]
            ids = pa.array(row_ids(a, a + len(s), width), pa.string())
            chunk = data.customers.take(pa.array(s)).set_column(0, "customer_id", ids)
            c_out.write_table(chunk)
            k = counts[s]
            total = int(k.sum())
            owner = np.repeat(np.arange(len(s)), k)
            within = np.arange(total) - np.repeat(np.cumsum(k) - k, k)
            pos = np.repeat(starts[s], k) + within
            h_out.write_table(
                pa.table(
                    {
                        "customer_id": ids.take(pa.array(owner)),
                        "product_id": pa.array(h_products[pos].tolist(), pa.string()),
                        "quantity": pa.array(np.ones(total)),
                    },
                    schema=hold_schema,
                )
            )
            n_holdings += total
    return customers, holdings, n_holdings


# ------------------------------------------------------------------------------ the CLI run
def offerwise_command() -> list[str]:
    script = Path(sys.executable).parent / "offerwise"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def run_score(
    env: dict, customers: Path, holdings: Path | None, out: Path, label: str, running: list
) -> dict:
    """One ``offerwise score`` process: wall time, peak RSS (the kernel's ru_maxrss), RSS polled
    every 0.1 s (peak in the first and in the second half of the run: flat while streaming
    means bounded) and the command's JSON summary."""
    import psutil

    log_out, log_err = out.with_suffix(".stdout"), out.with_suffix(".stderr")
    args = [*offerwise_command(), "score", "--tenant", TENANT, str(customers),
            *(["--holdings", str(holdings)] if holdings else []), "--out", str(out)]  # fmt: skip
    with open(log_out, "wb") as so, open(log_err, "wb") as se:
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=so, stderr=se, preexec_fn=die_with_parent
        )
    running.append(proc)
    polled_peak, next_note, samples = 0, started + 15, []
    tmp = out.with_name(out.name + ".tmp")
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter()
        with contextlib.suppress(psutil.NoSuchProcess):
            rss = psutil.Process(proc.pid).memory_info().rss
            samples.append((now - started, rss))
            polled_peak = max(polled_peak, rss)
        if now >= next_note:
            written = tmp.stat().st_size if tmp.exists() else 0
            print(f"  [{label}] {now - started:6.0f} s: {written / 2**20:6.0f} MB of scores "
                  f"written, RSS {polled_peak / 2**20:.0f} MB so far", file=sys.stderr, flush=True)  # fmt: skip
            next_note = now + 15
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    running.remove(proc)
    if proc.returncode != 0:
        raise BenchError(
            f"offerwise score ({label}) exited {proc.returncode}:\n{log_err.read_text()[-3000:]}"
        )
    summary = json.loads(log_out.read_text())
    halves = [
        max((rss for t, rss in samples if (t >= seconds / 2) == second), default=0) / 2**20
        for second in (False, True)
    ]
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "polled_peak_rss_mb": polled_peak / 2**20,
        "rss_first_half_mb": halves[0],
        "rss_second_half_mb": halves[1],
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "summary": summary,
        "out_mb": out.stat().st_size / 2**20,
    }


# ------------------------------------------------------------------------------ verification
def verify(out: Path, n_rows: int, width: int, products: list[str], spot: set[int]) -> dict:
    """Stream the scores file: row count, ids in order, columns, range; returns the spot rows."""
    import csv

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    with open(out, newline="") as fh:
        header = next(csv.reader(fh))
    expected = ["customer_id", *(f"score_{p}" for p in products)]
    if header != expected:
        raise BenchError(f"{out.name}: header {header[:4]}... != {expected[:4]}...")
    types = {c: pa.float64() for c in expected[1:]} | {"customer_id": pa.string()}
    reader = pacsv.open_csv(out, convert_options=pacsv.ConvertOptions(column_types=types))
    seen, rows = 0, {}
    for batch in reader:
        n = batch.num_rows
        ids = batch.column(0)
        want = pa.array(row_ids(seen, seen + n, width), pa.string())
        if seen + n > n_rows or not pc.all(pc.equal(ids, want)).as_py():
            bad = next((i for i in range(n) if ids[i].as_py() != want[i].as_py()), 0)
            raise BenchError(
                f"{out.name}: row {seen + bad} has id {ids[bad]}, expected {want[bad]}"
            )
        scores = np.column_stack([batch.column(j).to_numpy() for j in range(1, len(expected))])
        if not (np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()):
            raise BenchError(f"{out.name}: a score outside [0, 1] in rows {seen}..{seen + n}")
        for i in spot:
            if seen <= i < seen + n:
                rows[i] = scores[i - seen]
        seen += n
    if seen != n_rows:
        raise BenchError(f"{out.name}: {seen:,} data rows for {n_rows:,} input customers")
    return rows


def spot_rows(n_rows: int, n_tenant: int, chunk: int, seed: int = 5) -> set[int]:
    """Tenant customers at the head, copies across the file, chunk boundaries, the last row."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = {0, 1, 2, n_rows - 1}
    picks |= set(rng.integers(0, min(n_rows, n_tenant), 10).tolist())
    picks |= set(rng.integers(0, n_rows, 20).tolist())
    for b in range(chunk, n_rows, chunk * 4):
        picks |= {b - 1, b}
    return {int(i) for i in picks if 0 <= i < n_rows}


def check_real_time(r, settings, bundle, data, src, batch_rows: dict, holdings: bool) -> float:
    """Each spot row's batch scores vs the real-time scores of the customer it copies (with no
    holdings when the batch had no holdings file: the batch then sees none)."""
    import numpy as np

    from enrichment.crm.serving import get_customer
    from enrichment.zip_profile import zip_profile
    from store.tenants import get_tenant

    tenant = get_tenant(r, TENANT)
    worst = 0.0
    for i, batch in sorted(batch_rows.items()):
        customer_id = data.customer_ids[int(src[i])]
        customer = get_customer(r, TENANT, tenant.hash_customer_id(customer_id))
        if customer is None:
            raise BenchError(f"customer {customer_id} not found in Redis")
        if not holdings:
            customer = {**customer, "holdings": []}
        block = zip_profile(customer["zip"], "US", settings) if customer.get("zip") else None
        live = np.asarray(bundle.scores(bundle.builder.live_vector(None, customer, block)))
        diff = float(np.max(np.abs(live - batch)))
        worst = max(worst, diff)
        if diff > ATOL:
            raise BenchError(
                f"row {i} (copy of {customer_id}): batch {np.round(batch[:4], 6)}... vs real "
                f"time {np.round(live[:4], 6)}... (max diff {diff:.2e} > {ATOL:.0e})"
            )
    return worst


# ------------------------------------------------------------------------------ main
def run(args: argparse.Namespace, running: list) -> int:
    import redis

    from bench.private_redis import start_private_redis
    from enrichment.demographics import load_demographics
    from enrichment.segments import build_segments
    from models.batch import CHUNK_ROWS
    from models.bundle import load_bundle
    from models.pipeline import train_and_register
    from models.synthetic import SyntheticConfig, generate, install
    from models.training import TrainParams
    from store.config import Settings

    if not 0 < args.small < args.customers:
        raise BenchError("--small must be between 0 and --customers")
    shared = shared_data()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    running.append(work)
    geo_dir = writable_geonames(shared, work)
    redis_proc, url = start_private_redis(work, preexec_fn=die_with_parent)
    running.append(redis_proc)
    settings = Settings(data_dir=work / "var", geo_dir=geo_dir)
    r = redis.Redis.from_url(url)

    t0 = time.perf_counter()
    load_demographics(shared / "zcta_demographics.csv", settings)
    build_segments(settings, k=10, seed=0)
    config = SyntheticConfig(customers=args.tenant_customers, products=args.products,
                             dead_products=0, web_share=args.web_share, seed=1)  # fmt: skip
    data = generate(config, settings)
    report = install(r, settings, TENANT, data)
    t1 = time.perf_counter()
    params = TrainParams(max_rounds=args.max_rounds, early_stopping=10, product_views=False)
    trained = train_and_register(r, settings, TENANT, params=params)
    t2 = time.perf_counter()
    if not trained["registry"].get("promoted"):
        raise BenchError(f"the trained model was not promoted: {trained['registry']}")
    bundle = load_bundle(settings, TENANT, trained["version"])
    products = bundle.product_ids
    print(f"set-up: tenant of {args.tenant_customers:,} customers x {args.products} products "
          f"({report['events']:,} events) in {t1 - t0:.1f} s; champion {trained['version']} "
          f"({bundle.builder.schema.n_features} features, {len(products)} products) trained in "
          f"{t2 - t1:.1f} s")  # fmt: skip

    width = max(7, len(str(args.customers - 1)))
    if data.customer_ids[:3] != row_ids(0, 3, width):
        raise BenchError("synthetic ids changed format: the head rows would not be the tenant's")
    src = sources(args.customers, args.tenant_customers)
    sizes = {"floor": FLOOR_ROWS, "small": args.small, "full": args.customers}
    files = {}
    for label, n in sizes.items():  # the smaller files are the head of the full one
        t = time.perf_counter()
        files[label] = write_inputs(work, label, data, src[:n], width)
        c, h, n_hold = files[label]
        print(f"wrote {label}: {n:,} customers ({c.stat().st_size / 2**20:.0f} MB) and "
              f"{n_hold:,} holdings ({h.stat().st_size / 2**20:.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s")  # fmt: skip

    env = {**os.environ, "REDIS_URL": url, "OFFERWISE_DATA_DIR": str(settings.data_dir),
           "OFFERWISE_GEO_DIR": str(geo_dir)}  # fmt: skip
    env.pop("OFFERWISE_STAFF_TOKEN", None)
    # The command of the issue (customers + holdings) on the three files; then the two larger
    # ones without holdings: `score` reads the holdings file whole (models/batch.py), so these
    # show the customers stream on its own.
    plan = [(label, n, True) for label, n in sizes.items()]
    plan += [(f"{label}-noh", sizes[label], False) for label in ("small", "full")]
    runs = {}
    for label, n, with_holdings in plan:
        customers, holdings, n_hold = files[label.removesuffix("-noh")]
        if not with_holdings:
            holdings, n_hold = None, 0
        out = work / f"{label}_scores.csv"
        m = run_score(env, customers, holdings, out, label, running)
        if m["summary"].get("rows") != n:
            raise BenchError(f"{label}: the CLI reports {m['summary'].get('rows')} rows for {n:,}")
        spot = spot_rows(n, args.tenant_customers, CHUNK_ROWS)
        t = time.perf_counter()
        batch_rows = verify(out, n, width, products, spot)
        worst = check_real_time(r, settings, bundle, data, src, batch_rows, with_holdings)
        m |= {"rows": n, "holdings": n_hold, "rows_per_s": n / m["seconds"],
              "spot_rows": len(batch_rows), "max_abs_diff_vs_real_time": worst,
              "verify_seconds": time.perf_counter() - t}  # fmt: skip
        runs[label] = m
        print(f"{label:9}: {n:>9,} rows in {m['seconds']:6.1f} s ({m['rows_per_s']:>7,.0f} rows/s,"
              f" CPU {m['cpu_seconds']:.1f} s), peak RSS {m['peak_rss_mb']:5.0f} MB; output "
              f"{m['out_mb']:.0f} MB checked: {n:,} rows in input order, {len(products)} score "
              f"columns, {len(batch_rows)} spot rows = real time (max diff {worst:.1e})")  # fmt: skip
        out.unlink()

    small, full, floor = runs["small"], runs["full"], runs["floor"]
    ratio = full["peak_rss_mb"] / small["peak_rss_mb"]
    ratio_noh = runs["full-noh"]["peak_rss_mb"] / runs["small-noh"]["peak_rss_mb"]
    print()
    print(f"{'run':9} {'rows':>10} {'holdings':>10} {'wall s':>7} {'rows/s':>8} {'CPU s':>6} "
          f"{'peak RSS MB':>11} {'RSS 1st half':>12} {'RSS 2nd half':>12}")  # fmt: skip
    for label, m in runs.items():
        print(f"{label:9} {m['rows']:>10,} {m['holdings']:>10,} {m['seconds']:>7.1f} "
              f"{m['rows_per_s']:>8,.0f} {m['cpu_seconds']:>6.1f} {m['peak_rss_mb']:>11.0f} "
              f"{m['rss_first_half_mb']:>12.0f} {m['rss_second_half_mb']:>12.0f}")  # fmt: skip
    print(f"SUMMARY batch scoring {args.customers:,} customers x {len(products)} products "
          f"(+ {full['holdings']:,} holdings): {full['seconds']:.1f} s "
          f"({full['rows_per_s']:,.0f} rows/s); peak RSS {small['peak_rss_mb']:.0f} MB at "
          f"{args.small:,} rows vs {full['peak_rss_mb']:.0f} MB at {args.customers:,} "
          f"(x{args.customers / args.small:.0f} rows, x{ratio:.2f} memory; without holdings "
          f"{runs['small-noh']['peak_rss_mb']:.0f} vs {runs['full-noh']['peak_rss_mb']:.0f} MB, "
          f"x{ratio_noh:.2f}; start-up floor {floor['peak_rss_mb']:.0f} MB at {FLOOR_ROWS:,} "
          f"rows)")  # fmt: skip
    document = {
        "customers": args.customers, "small": args.small, "products": len(products),
        "features": bundle.builder.schema.n_features, "tenant_customers": args.tenant_customers,
        "model_version": trained["version"], "chunk_rows": CHUNK_ROWS,
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
        "setup_seconds": t1 - t0, "train_seconds": t2 - t1,
        "peak_rss_ratio_full_vs_small": ratio,
        "peak_rss_ratio_full_vs_small_without_holdings": ratio_noh, "runs": runs,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if args.keep:
        running.remove(work)
        print(f"kept {work}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000, help="rows of the full file")
    ap.add_argument("--small", type=int, default=100_000, help="rows of the 10x smaller file")
    ap.add_argument("--tenant-customers", type=int, default=20_000)
    ap.add_argument("--products", type=int, default=20)
    ap.add_argument("--web-share", type=float, default=0.05)
    ap.add_argument("--max-rounds", type=int, default=60)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = ap.parse_args(argv)

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    running: list = []  # child processes and the temporary folder, cleaned up in reverse
    try:
        return run(args, running)
    except BenchError as err:
        print(f"bench_batch_scoring: FAILED: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_batch_scoring: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not skip clean-up
        for item in reversed(running):
            if isinstance(item, Path):
                shutil.rmtree(item, ignore_errors=True)
            else:
                _stop(item)


if __name__ == "__main__":
    sys.exit(main())
