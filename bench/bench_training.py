"""Benchmark: train per-product models on a synthetic tenant (default 100k customers x 20 products).

Target (issue 4): 1,000,000 customers x ~60 features x 20 products in under 10 minutes on the
2-core dev machine. Set-up goes through the real path (private redis-server on a free port,
ZIP demographics and segments loaded from the shared data, CRM import, events through the
ingest path, archiver) and is timed separately; the figure that counts is ``train_tenant``.
Also prints the single-row feature-vector latency (live profile + CRM + ZIP -> float32 vector).

    .venv/bin/python bench/bench_training.py [--rows 1000000] [--products 20] [--web-share 0.02]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.shared_data import shared_data, writable_geonames

TARGET_SECONDS_1M = 600.0
TARGET_ROW_US = 200.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=20)
    ap.add_argument("--web-share", type=float, default=0.02, help="customers with web events")
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--max-rounds", type=int, default=200)
    ap.add_argument("--max-train-rows", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = ap.parse_args()

    import numpy as np
    import redis

    from bench.private_redis import start_private_redis
    from clickstream.profiles import customer_visitors_key, read_profile
    from enrichment.crm import get_customer
    from enrichment.demographics import load_demographics
    from enrichment.segments import build_segments
    from models.features import FeatureBuilder, ZipLookup
    from models.synthetic import SyntheticConfig, generate, install
    from models.training import TrainParams, save_result, train_tenant
    from store.tenants import get_tenant

    shared = shared_data()
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    geo_dir = writable_geonames(shared, work)
    proc, url = start_private_redis(work)
    try:
        from store.config import Settings

        settings = Settings(data_dir=work / "var", geo_dir=geo_dir)
        r = redis.Redis.from_url(url)
        t0 = time.perf_counter()
        load_demographics(shared / "zcta_demographics.csv", settings)
        build_segments(settings, k=args.segments, seed=0)
        t1 = time.perf_counter()
        config = SyntheticConfig(customers=args.rows, products=args.products, dead_products=0,
                                 web_share=args.web_share, seed=1)  # fmt: skip
        data = generate(config, settings)
        t2 = time.perf_counter()
        report = install(r, settings, "bench", data)
        t3 = time.perf_counter()
        print(f"setup: demographics+segments {t1 - t0:.1f} s, generate {t2 - t1:.1f} s, "
              f"install {t3 - t2:.1f} s {report['seconds']} ({report['events']} events)")  # fmt: skip

        params = TrainParams(max_rounds=args.max_rounds, max_train_rows=args.max_train_rows,
                             product_views=False)  # fmt: skip
        started = time.perf_counter()

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            print(
                f"  [{now - started:7.1f} s] {stage} ({done}/{total})", file=sys.stderr, flush=True
            )

        result = train_tenant(
            r, settings, "bench", None, "holdings", params=params, progress=progress
        )
        seconds = time.perf_counter() - started
        folder = save_result(settings, result)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        print(f"training: {args.rows:,} customers x {result.schema.n_features} features x "
              f"{len(result.trained_products)} products in {seconds:.1f} s "
              f"(prepare {result.timings['prepare_seconds']:.1f} s, "
              f"models {result.timings['train_seconds']:.1f} s); peak RSS {rss_mb:,.0f} MB")  # fmt: skip
        rows = []
        for p, pr in result.products.items():
            c = pr.candidates
            rows.append((p, pr.chosen, c["xgboost"]["holdout"]["auc"], c["logistic"]["holdout"]["auc"],
                         c["tree"]["holdout"]["auc"], c["popularity"]["holdout"]["auc"],
                         c["xgboost"]["info"]["trees"], pr.rows["train"], pr.seconds))  # fmt: skip
        print(f"{'product':8} {'served':10} {'xgb':>6} {'lr':>6} {'tree':>6} {'pop':>6} "
              f"{'trees':>5} {'train_rows':>10} {'s':>6}")  # fmt: skip
        for row in rows:
            print(f"{row[0]:8} {row[1]:10} {row[2]:6.3f} {row[3]:6.3f} {row[4]:6.3f} {row[5]:6.3f} "
                  f"{row[6]:5d} {row[7]:10,d} {row[8]:6.1f}")  # fmt: skip
        mean = np.mean([[r_[2], r_[3], r_[5]] for r_ in rows], axis=0)
        print(
            f"mean holdout AUC: xgboost {mean[0]:.3f}, logistic {mean[1]:.3f}, popularity {mean[2]:.3f}"
        )
        print(f"artifacts: {folder}")

        # Single-row feature vector: an identified visitor with a live profile.
        builder = FeatureBuilder(result.schema)
        zips = ZipLookup(settings)
        tenant = get_tenant(r, "bench")
        i = int(np.flatnonzero(data.has_web)[0])
        h = tenant.hash_customer_id(data.customer_ids[i])
        customer = get_customer(r, "bench", h)
        visitor = sorted(v.decode() for v in r.smembers(customer_visitors_key("bench", h)))[0]
        profile = read_profile(r, "bench", visitor)
        block = zips.block(customer["zip"])
        times = []
        for _ in range(3000):
            s = time.perf_counter()
            x = builder.live_vector(profile, customer, block)
            times.append(time.perf_counter() - s)
        us = np.array(times[500:]) * 1e6
        scorer_us = []
        for _ in range(2000):
            s = time.perf_counter()
            result.scorer.score(x)
            scorer_us.append(time.perf_counter() - s)
        sc = np.array(scorer_us[300:]) * 1e6
        print(f"feature row (row_from_live + transform): p50 {np.median(us):.0f} us, "
              f"p99 {np.percentile(us, 99):.0f} us; scorer p50 {np.median(sc):.0f} us")  # fmt: skip
        target = TARGET_SECONDS_1M * args.rows / 1_000_000
        print(f"SUMMARY training {seconds:.1f} s for {args.rows:,} rows (target {target:.0f} s "
              f"pro rata of 600 s per 1M: ratio {seconds / target:.2f}); feature row p50 "
              f"{np.median(us):.0f} us (target {TARGET_ROW_US:.0f}: ratio "
              f"{np.median(us) / TARGET_ROW_US:.2f})")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
