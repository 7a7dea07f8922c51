"""Benchmark: score all product models for one visitor, one by one vs the flattened scorer.

Trains N XGBoost binary boosters (hist, depth 6) on synthetic data with missing groups, then
measures per-visitor latency of (a) calling the boosters one by one with inplace_predict and
(b) MultiProductScorer.score, plus batch throughput, artifact size and parity with xgboost.

    .venv/bin/python bench/bench_scorer.py [--products 20 --trees 200 --visitors 5000]

Targets (issue 4, item 5): p50 < 300 us and p99 < 1 ms per visitor for 20 x 200 trees.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import xgboost as xgb

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models.fast_scorer import MultiProductScorer

TARGET_P50_US = 300.0
TARGET_P99_US = 1000.0


def synthetic(rows: int, n_features: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, n_features)).astype(np.float32)
    X[:, :10] = np.round(X[:, :10] * 3)  # counts / categories coded as small integers
    X[rng.random(rows) < 0.4, 20:35] = np.nan  # anonymous visitors: no CRM block
    X[rng.random(X.shape) < 0.05] = np.nan
    return X


def train_boosters(
    X, products: int, trees: int, depth: int, cache_dir: str | None
) -> dict[str, xgb.Booster]:
    rng = np.random.default_rng(1)
    Xz = np.nan_to_num(X)
    out = {}
    for p in range(products):
        w = rng.normal(size=X.shape[1]) * (rng.random(X.shape[1]) < 0.3)
        noise = rng.logistic(size=len(Xz))
        cached = None
        if cache_dir:
            cached = os.path.join(
                cache_dir, f"bench_scorer_{X.shape[0]}x{X.shape[1]}_{trees}t_d{depth}_p{p}.ubj"
            )
        if cached and os.path.exists(cached):
            booster = xgb.Booster(model_file=cached)
        else:
            z = Xz @ w * 0.5 + np.sin(Xz[:, p % X.shape[1]] * 2) + np.isnan(X[:, 25]) * 0.5
            y = (z + noise > np.quantile(z, 0.8)).astype(int)
            params = {"objective": "binary:logistic", "tree_method": "hist",
                      "max_depth": depth, "eta": 0.1, "nthread": 2, "seed": p}  # fmt: skip
            booster = xgb.train(params, xgb.DMatrix(X, y), num_boost_round=trees)
            if cached:
                os.makedirs(cache_dir, exist_ok=True)
                booster.save_model(cached)
        booster.set_param({"nthread": 1})  # one row: threads only add overhead
        out[f"product_{p:02d}"] = booster
    return out


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return float(np.percentile(us, 50)), float(np.percentile(us, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=20)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--features", type=int, default=60)
    ap.add_argument("--train-rows", type=int, default=10_000)
    ap.add_argument("--visitors", type=int, default=5_000)
    ap.add_argument("--baseline-visitors", type=int, default=300, help="baseline is ~10 ms each")
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--cache-dir", help="reuse boosters trained by an earlier run (bench only)")
    args = ap.parse_args()

    X_train = synthetic(args.train_rows, args.features)
    t0 = time.perf_counter()
    boosters = train_boosters(X_train, args.products, args.trees, args.depth, args.cache_dir)
    how = "loaded from --cache-dir or trained" if args.cache_dir else "trained"
    print(
        f"{how} {args.products} boosters x {args.trees} trees (depth {args.depth}, "
        f"{args.train_rows} rows x {args.features} features) in {time.perf_counter() - t0:.1f} s"
    )
    names = [f"f{i}" for i in range(args.features)]
    t0 = time.perf_counter()
    scorer = MultiProductScorer.from_boosters(boosters, names)
    build_s = time.perf_counter() - t0
    blob = scorer.to_bytes()
    t0 = time.perf_counter()
    scorer = MultiProductScorer.from_bytes(blob)
    load_ms = (time.perf_counter() - t0) * 1e3
    forest = scorer._forest
    print(
        f"flattened: {forest.n_trees} trees, depth {forest.depth}, "
        f"{forest.cond_thr.size} distinct split conditions; build {build_s:.2f} s "
        f"(incl. parity check), artifact {len(blob) / 1e6:.1f} MB, load {load_ms:.1f} ms"
    )

    visitors = synthetic(args.visitors, args.features, seed=2)
    # parity on every benchmarked visitor
    want = np.stack([b.inplace_predict(visitors) for b in boosters.values()], axis=1)
    got = scorer.score_batch(visitors)
    print(f"parity: max |p_scorer - p_xgboost| over {args.visitors} visitors = "
          f"{np.abs(got - want).max():.2e}")  # fmt: skip

    # (a) baseline: every booster called for the one visitor
    bl = list(boosters.values())
    for b in bl:
        b.inplace_predict(visitors[:1])
    base_ns = []
    for x in visitors[: args.baseline_visitors]:
        row = x[None, :]
        t = time.perf_counter_ns()
        for b in bl:
            b.inplace_predict(row)
        base_ns.append(time.perf_counter_ns() - t)
    b50, b99 = percentiles(base_ns)

    # (b) the flattened scorer
    for x in visitors[:200]:
        scorer.score(x)
    fast_ns, fast_cpu_ns = [], []
    for x in visitors:
        c = time.thread_time_ns()
        t = time.perf_counter_ns()
        scorer.score(x)
        fast_ns.append(time.perf_counter_ns() - t)
        fast_cpu_ns.append(time.thread_time_ns() - c)
    f50, f99 = percentiles(fast_ns)
    c50, c99 = percentiles(fast_cpu_ns)

    X_batch = synthetic(args.batch_rows, args.features, seed=3)
    t0 = time.perf_counter()
    scorer.score_batch(X_batch)
    batch_rps = args.batch_rows / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for b in bl:
        b.set_param({"nthread": 2})
        b.inplace_predict(X_batch)
    xgb_rps = args.batch_rows / (time.perf_counter() - t0)

    print(f"(a) boosters one by one ({args.baseline_visitors} visitors): "
          f"p50 {b50:,.0f} us  p99 {b99:,.0f} us")  # fmt: skip
    print(f"(b) MultiProductScorer.score ({args.visitors} visitors): "
          f"p50 {f50:,.0f} us  p99 {f99:,.0f} us")  # fmt: skip
    print(f"    same calls, CPU time of the thread (excludes preemption by other processes): "
          f"p50 {c50:,.0f} us  p99 {c99:,.0f} us")  # fmt: skip
    print(f"speedup: p50 {b50 / f50:.0f}x  p99 {b99 / f99:.0f}x")
    load1 = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load1:.2f} (shared machine: "
          "wall-clock p99 includes time the process waited for a core)")  # fmt: skip
    print(f"batch: score_batch {batch_rps:,.0f} rows/s (all {args.products} products); "
          f"xgboost predict, 2 threads, {xgb_rps:,.0f} rows/s")  # fmt: skip
    ok = f50 < TARGET_P50_US and f99 < TARGET_P99_US
    print(
        f"SUMMARY scorer p50 {f50:.0f} us / target {TARGET_P50_US:.0f} us = "
        f"{f50 / TARGET_P50_US:.2f}; p99 {f99:.0f} us / target {TARGET_P99_US:.0f} us = "
        f"{f99 / TARGET_P99_US:.2f}; {'MET' if ok else 'MISSED'} "
        f"(baseline p50 {b50 / 1e3:.1f} ms, {b50 / f50:.0f}x faster; cpu p99 {c99:.0f} us, "
        f"load {load1:.1f})"
    )


if __name__ == "__main__":
    main()
