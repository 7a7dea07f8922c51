"""Benchmark: model selection on a small CRM extract (issue 13 item 1).

A realistic small extract: a few thousand customers on real ZIP codes (the shared census
table), CRM attributes with some noise columns, two common products, and target products held
by a few percent whose propensity depends on the ZIP's demographics, age, VIP status, channel
and the common holdings, mostly additively with one mild interaction (what CRM data looks like:
logistic regression is hard to beat). The tenant is installed for real (CRM import, features
through the shared builder); then, for each of ``--splits`` stratified holdout splits (20% of
the customers, stratified on the product), every target product is trained three ways:

- **served**: the training pipeline as shipped (few positives: repeated stratified k-fold CV,
  small-data XGBoost, the blend candidate; models/training/selection.py);
- **before**: the previous selection, one validation slice of the training part
  (``cv_max_positives=0``, depth-6 XGBoost at learning rate 0.2);
- **plain LR**: median imputation, scaling, L2 logistic regression at C = 1 on the training part.

It prints holdout AUC and top-20% capture per product and split, the served model against
each single candidate, and the paired difference (with its standard error over products x
splits) of served minus best single candidate and served minus plain LR.

    .venv/bin/python bench/bench_selection.py [--customers 4000] [--targets 4] [--splits 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.shared_data import shared_data, writable_geonames

HOLDOUT_SHARE = 0.2
COMMON = 2  # products p0, p1: common holdings (cross-sell features of the targets)


def few_percent_holdings(data, rate_shift: float, seed: int) -> None:
    """Replace products p2.. with few-percent products (see the module docstring)."""
    import numpy as np
    import pyarrow as pa

    from models.synthetic import _sigmoid

    # Not default_rng(seed): generate() drew the ZIPs from that stream, so the same uniforms
    # would make the label a function of the ZIP (a leak worth 0.98 AUC; measured).
    rng = np.random.default_rng([seed, 13])
    cols = data.customers.to_pydict()
    n = len(cols["customer_id"])
    age = np.array([np.nan if a is None else a for a in cols["age"]], dtype=float)
    age = np.where(np.isnan(age), 45.0, age)
    income = np.asarray(cols["income"], dtype=float)
    vip = np.asarray(cols["vip"]) == "yes"
    web = np.asarray(cols["channel"]) == "web"
    w = np.log(income)
    w = (w - w.mean()) / w.std()
    holds = data.holds
    for j in range(COMMON, len(data.products)):
        k = j - COMMON
        z = (
            -4.1
            + rate_shift
            + [0.7, -0.5, 0.4, 0.9][k % 4] * w
            + [0.025, 0.02, -0.03, 0.01][k % 4] * (age - 48)
            + [0.8, 0.3, 0.6, 0.2][k % 4] * vip
            + [0.3, 0.7, -0.4, 0.5][k % 4] * web
            + [1.0, 0.4, 0.8, 0.2][k % 4] * holds[:, 0]
            + [0.2, 0.9, 0.3, 0.7][k % 4] * holds[:, 1]
            + 0.6 * ((age > 60) & (w > 0.5))  # the mild interaction
        )
        p = _sigmoid(z)
        data.p_hold[:, j] = p
        holds[:, j] = rng.random(n) < p
    hi, hj = np.nonzero(holds)
    data.holdings = pa.table(
        {
            "customer_id": [data.customer_ids[i] for i in hi],
            "product_id": [data.products[j] for j in hj],
            "quantity": np.ones(len(hi)),
        }
    )


def stratified_holdout(y, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    split = np.zeros(y.size, dtype=np.int8)
    for cls in (False, True):
        rows = rng.permutation(np.flatnonzero(y == cls))
        split[rows[: round(rows.size * HOLDOUT_SHARE)]] = 2
    return split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--targets", type=int, default=4, help="few-percent products")
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--rate-shift", type=float, default=0.0, help="added to the target logits")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import redis

    from bench.private_redis import start_private_redis
    from enrichment.demographics import load_demographics
    from enrichment.segments import build_segments
    from models.baselines import fit_logistic
    from models.evaluation import evaluate_scores
    from models.synthetic import SyntheticConfig, generate, install
    from models.training import TrainParams, prepare
    from models.training.fit import _train_product
    from store.config import Settings

    shared = shared_data()
    work = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    geo_dir = writable_geonames(shared, work)
    proc, url = start_private_redis(work)
    try:
        settings = Settings(data_dir=work / "var", geo_dir=geo_dir)
        r = redis.Redis.from_url(url)
        load_demographics(shared / "zcta_demographics.csv", settings)
        build_segments(settings, k=10, seed=0)
        config = SyntheticConfig(customers=args.customers, products=COMMON + args.targets,
                                 dead_products=0, web_share=0.0, extra_numeric=8,
                                 extra_categorical=3, seed=args.seed)  # fmt: skip
        data = generate(config, settings)
        few_percent_holdings(data, args.rate_shift, args.seed)
        install(r, settings, "bench", data)
        base = TrainParams(product_views=False)
        ds = prepare(r, settings, "bench", products=None, params=base)
        targets = [p for p in ds.products if p not in ("p0", "p1")]
        print(f"{ds.X.shape[0]:,} customers x {ds.X.shape[1]} features; targets "
              + ", ".join(f"{p} {ds.Y[:, ds.products.index(p)].mean():.1%}" for p in targets))  # fmt: skip

        rows = []  # (product, split, {method: (auc, capture)}, chosen, seconds)
        for s in range(args.splits):
            for p in targets:
                j = ds.products.index(p)
                y = ds.Y[:, j]
                split = stratified_holdout(y, 100 + s)
                ho = split == 2
                figs: dict[str, tuple[float, float]] = {}

                def fig(scores, ho=ho, y=y):
                    ev = evaluate_scores(y[ho], scores)
                    return ev["auc"], ev["capture_at_20"]

                t = time.perf_counter()
                new = dataclasses.replace(ds, split=split)
                res, cands, _ = _train_product(new, j, TrainParams(product_views=False),
                                               np.random.default_rng(s))  # fmt: skip
                seconds = time.perf_counter() - t
                for name, cand in cands.items():
                    figs[name] = fig(cand.prob(ds.X[ho]))
                figs["served"] = figs[res.chosen]
                # before: one validation slice (15% of all customers) of the training part
                old_split = split.copy()
                rng = np.random.default_rng(200 + s)
                part = np.flatnonzero(split == 0)
                old_split[rng.choice(part, size=int(0.15 * y.size / 0.8), replace=False)] = 1
                before = dataclasses.replace(ds, split=old_split)
                res_b, cands_b, _ = _train_product(
                    before, j, TrainParams(product_views=False, cv_max_positives=0),
                    np.random.default_rng(s),
                )  # fmt: skip
                figs["before"] = fig(cands_b[res_b.chosen].prob(ds.X[ho]))
                # plain logistic regression at C = 1
                Xtr = ds.X[split == 0].copy()
                masked = [k for k, nm in enumerate(ds.schema.feature_names) if nm == f"holds_{p}"]
                Xtr[:, masked] = np.nan
                lr, _ = fit_logistic(Xtr, y[split == 0], Xtr, y[split == 0], masked=masked,
                                     grid=(1.0,))  # fmt: skip
                figs["plain_lr"] = fig(lr.margin(ds.X[ho]))
                rows.append((p, s, figs, res.chosen, res_b.chosen, seconds,
                             res.positives["train"] + res.positives["validation"]))  # fmt: skip
                print(f"split {s} {p}: {res.positives['train'] + res.positives['validation']} "
                      f"training positives, served {res.chosen} ({seconds:.1f} s) "
                      + " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in figs.items()),
                      flush=True)  # fmt: skip

        methods = [m for m in rows[0][2] if m not in ("served",)]
        print("\nholdout AUC / capture of buyers in the top 20%, mean over "
              f"{len(targets)} products x {args.splits} splits:")  # fmt: skip
        for m in ["served", *methods]:
            a = np.mean([r_[2][m][0] for r_ in rows])
            c = np.mean([r_[2][m][1] for r_ in rows])
            print(f"  {m:12} AUC {a:.3f}  capture@20% {c:.3f}")
        singles = [m for m in methods if m not in ("before", "plain_lr", "blend")]
        best = max(singles, key=lambda m: np.mean([r_[2][m][0] for r_ in rows]))

        def paired(a: str, b: str, k: int) -> str:
            d = np.array([r_[2][a][k] - r_[2][b][k] for r_ in rows])
            return f"{d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(d.size):.4f}"

        for other in (best, "plain_lr", "before"):
            print(
                f"served - {other}: AUC {paired('served', other, 0)}, "
                f"capture@20% {paired('served', other, 1)} (mean ± s.e.)"
            )
        chosen = {}
        for r_ in rows:
            chosen[r_[3]] = chosen.get(r_[3], 0) + 1
        print(f"served candidates: {chosen}; training seconds per product "
              f"{np.mean([r_[5] for r_ in rows]):.1f} (mean)")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
