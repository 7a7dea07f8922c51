"""A simulated shop with known truth, driven through the real HTTP API (issue 13's proof).

People live on real ZIPs of the shared census table (``zcta_demographics.csv``); how much
each person likes each of 20 products (five categories) depends on their ZIP's demographics
(standardized log wages per resident, log density, urban share), product by product and
through category tastes; on their age, likewise; on the products they hold (a holding raises
the next product of its category: cross-sell, ``CROSS_SELL``); and on a personal category
taste that only their browsing reveals (views are drawn in proportion to exp(liking)).
Customers hold products with probability ``sigmoid(liking - 2.5)``, drawn in product order. The
true probability that a person clicks an offered product is ``sigmoid(CLICK_BASE + liking)``.

Most of the personal signal is at product level (which products of a category suit this age,
this ZIP, these holdings), which category-level popularity cannot see; how much better the
truth's best is than popularity bounds what any model can show, so it is reported beside.

Against a real `offerwise serve` (gunicorn) and `offerwise worker` on a private Redis:

1. two tenants with the same catalog and CRM extract (customers with ZIP, age and holdings):
   ``model`` will be trained, ``twin`` never is, so it serves the same service's popularity
   (segment popularity blended with global) for the same sessions;
2. history: CRM customers who browse after logging in (``identify``) and anonymous visitors
   (most give a ZIP) browse, add to cart and buy, sent to both tenants through ``/v1/collect``;
3. the events are archived (``offerwise archive``) and ``POST /v1/staff/tenants/model/train``
   trains a version (a customer model on holdings, and the anonymous visitors' model on the
   archive) in the worker;
4. test sessions of three kinds (identified customers, anonymous visitors with a ZIP, anonymous
   without): a few product views (and the ZIP or the login), sent to both tenants, then
   ``GET /v1/recommend`` (3 offers) from each.

Per kind, the expected click-through of a slate is the mean true click probability of its
offers; reported for the model, popularity (the twin), random offers and the truth's best (the
3 products the person likes most), each under the same rules (held products excluded, at most
2 per category), with 95% intervals, and the ratio model / popularity with a paired bootstrap
interval.

    .venv/bin/python bench/sim_world.py [--customers 3000] [--anonymous 3000] [--test 600]

Exit status 0 when the targets hold on the point estimates (identified >= 2x popularity,
anonymous with a ZIP >= 1.3x, anonymous without a ZIP >= 1x), else 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.child_processes import die_with_parent  # noqa: E402
from bench.live_server import LiveServer, ShopApi, live_server  # noqa: E402
from bench.shared_data import shared_data  # noqa: E402

CATEGORIES = ("kids", "beauty", "jewellery", "outdoor", "electronics")
PER_CATEGORY = 4
N_OFFERS = 3
CAP = 2  # max_per_category (the service's default rule)
CLICK_BASE = -3.9
CROSS_SELL = 1.5
KINDS = ("identified", "anonymous_zip", "anonymous_no_zip")
POLICIES = ("model", "popularity", "random", "best")
TARGETS = {"identified": 2.0, "anonymous_zip": 1.3, "anonymous_no_zip": 1.0}


@dataclass
class WorldParams:
    customers: int = 3000
    anonymous: int = 3000
    test: int = 600  # test sessions per kind
    zips: int = 120
    seed: int = 0
    threads: int = 8


@dataclass
class World:
    """The truth: ZIPs, products and each person's liking."""

    params: WorldParams
    zips: list[str]
    zip_factors: np.ndarray  # (Z, 3) standardized
    products: list[dict]
    category_index: np.ndarray  # (P,) category of each product
    a: np.ndarray  # (P,) base liking
    B: np.ndarray  # (P, 3) ZIP demographics -> liking
    M: np.ndarray  # (C, 3) ZIP demographics -> taste
    age_effect: np.ndarray  # (C,) category taste per standard deviation of age
    age_product: np.ndarray  # (P,) liking per standard deviation of age, product by product
    cross: np.ndarray  # (P, P) holding row product -> liking of column product
    rng: np.random.Generator

    @property
    def n_products(self) -> int:
        return len(self.products)


@dataclass
class Person:
    zip_index: int
    age: float
    taste: np.ndarray  # (C,)
    held: np.ndarray  # (P,) bool
    liking: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,)


def load_zips(path: Path, count: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """``count`` populated mainland ZIPs with wages, sampled by population; their standardized
    log wages per resident, log density and urban share."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                pop = float(row["population"])
                wages = float(row["wages_per_resident_usd"])
                density = float(row["density_per_sqmi"])
                urban = float(row["urban_share"])
            except (TypeError, ValueError):
                continue
            if pop >= 2000 and wages > 0 and row["state"] not in ("PR", "AK", "HI"):
                rows.append((row["zip"], pop, math.log(wages), math.log1p(density), urban))
    pops = np.array([r[1] for r in rows])
    pick = rng.choice(len(rows), size=count, replace=False, p=pops / pops.sum())
    chosen = [rows[i] for i in pick]
    F = np.array([r[2:] for r in chosen], dtype=float)
    F = (F - F.mean(axis=0)) / F.std(axis=0)
    return [r[0] for r in chosen], F


def make_world(params: WorldParams, data: Path) -> World:
    rng = np.random.default_rng(params.seed)
    zips, factors = load_zips(data / "zcta_demographics.csv", params.zips, rng)
    products, cats = [], []
    for c, cat in enumerate(CATEGORIES):
        for k in range(PER_CATEGORY):
            pid = f"p{len(products) + 1:02d}"
            price = round(float(rng.uniform(10, 200)), 2)
            products.append({"product_id": pid, "name": f"{cat} item {k + 1}", "category": cat,
                             "price": price, "margin": round(price * 0.3, 2)})  # fmt: skip
            cats.append(c)
    P, C = len(products), len(CATEGORIES)
    cat_index = np.array(cats)
    # Cross-sell: holding a product raises the next one of its category (a case for a phone).
    cross = np.zeros((P, P))
    for j in range(P):
        same = np.flatnonzero(cat_index == cat_index[j])
        cross[j, same[(list(same).index(j) + 1) % len(same)]] = CROSS_SELL
    return World(
        params=params,
        zips=zips,
        zip_factors=factors,
        products=products,
        category_index=cat_index,
        a=rng.normal(0.0, 0.3, P),
        B=rng.normal(0.0, 0.9, (P, 3)),
        M=rng.normal(0.0, 0.4, (C, 3)),
        age_effect=rng.normal(0.0, 0.4, C),
        age_product=rng.normal(0.0, 0.9, P),
        cross=cross,
        rng=rng,
    )


def make_person(world: World, *, customer: bool) -> Person:
    """A person of a random ZIP: age, tastes, holdings (customers only) and liking."""
    rng = world.rng
    z = int(rng.integers(len(world.zips)))
    f = world.zip_factors[z]
    age = float(np.clip(rng.normal(45 - 5 * f[1], 14), 18, 90))
    age_z = (age - 45) / 14
    taste = world.M @ f + world.age_effect * age_z + rng.normal(0.0, 0.5, len(CATEGORIES))
    base = world.a + taste[world.category_index] + world.B @ f + world.age_product * age_z
    held = np.zeros(world.n_products, dtype=bool)
    if customer:
        # Product by product, so a holding's cross-sell shows in the later holdings too (as it
        # would in a real extract: case holders mostly hold the phone).
        draws = rng.random(world.n_products)
        for j in range(world.n_products):
            lift = held.astype(float) @ world.cross[:, j]
            held[j] = draws[j] < 1 / (1 + np.exp(-(base[j] + lift - 2.5)))
    person = Person(z, age, taste, held)
    person.liking = base + held.astype(float) @ world.cross
    return person


def click_prob(liking: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(CLICK_BASE + liking)))


def browse(world: World, person: Person, k: int) -> list[str]:
    """``k`` product views, drawn in proportion to exp(liking)."""
    w = np.exp(person.liking)
    idx = world.rng.choice(world.n_products, size=k, p=w / w.sum())
    return [world.products[i]["product_id"] for i in idx]


# ----------------------------------------------------------------------------- the shop


class Shop:
    """The two tenants; every event goes to both."""

    def __init__(self, server: LiveServer, world: World) -> None:
        self.server = server
        self.world = world
        self.model = ShopApi.create_tenant(server, "model")
        self.twin = ShopApi.create_tenant(server, "twin")
        for name in ("model", "twin"):  # everyone is served: no tenant-wide holdout
            self.staff("PATCH", f"/v1/staff/tenants/{name}", json={"holdout_share": 0.0})
        for api in (self.model, self.twin):
            api.put_catalog(world.products)
            # Offers ranked by the chance of a click (not margin x chance): what is measured.
            api.admin("PUT", "/v1/admin/rules", json={"weight": "none"})

    def staff(self, method: str, path: str, **kw: object) -> dict:
        res = requests.request(
            method, self.server.base_url + path,
            headers={"Authorization": f"Bearer {self.server.staff_token}"}, timeout=60, **kw,
        )  # fmt: skip
        if res.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {res.status_code} {res.text[:500]}")
        return res.json()

    def collect(self, visitor: str, events: list[dict]) -> None:
        for api in (self.model, self.twin):
            api.collect(visitor, [dict(e) for e in events])

    def import_crm(self, people: Sequence[Person]) -> None:
        cust, hold = io.StringIO(), io.StringIO()
        cust.write("customer_id,zip,age\n")
        hold.write("customer_id,product_id\n")
        for i, p in enumerate(people):
            cust.write(f"c{i},{self.world.zips[p.zip_index]},{p.age:.0f}\n")
            for j in np.flatnonzero(p.held):
                hold.write(f"c{i},{self.world.products[j]['product_id']}\n")
        for api in (self.model, self.twin):
            api.admin(
                "POST", "/v1/admin/crm",
                files={"customers": ("c.csv", cust.getvalue()), "holdings": ("h.csv", hold.getvalue())},
            )  # fmt: skip


def history(shop: Shop, customers: list[Person], anonymous: list[Person], threads: int) -> int:
    world = shop.world
    api = shop.model
    jobs: list[tuple[str, list[dict]]] = []
    for i, p in enumerate(customers):
        if world.rng.random() < 0.5:
            views = browse(world, p, int(world.rng.integers(2, 9)))
            events = [api.event("identify", customer_id=f"c{i}")]
            events += [api.event("product_view", product_id=v) for v in views]
            jobs.append((f"hc{i}", events))
    for i, p in enumerate(anonymous):
        events = []
        if world.rng.random() < 0.6:
            events.append(api.event("zip", zip=world.zips[p.zip_index], country="US"))
        k = int(world.rng.integers(4, 13))
        for v in browse(world, p, k):
            events.append(api.event("product_view", product_id=v))
            if world.rng.random() < 0.15:
                events.append(api.event("add_to_cart", product_id=v))
        jobs.append((f"ha{i}", events))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda job: shop.collect(*job), jobs))
    return sum(len(e) for _, e in jobs)


def cli(server: LiveServer, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=server.env, check=True,
        capture_output=True, text=True, preexec_fn=die_with_parent,
    )  # fmt: skip
    return out.stdout


def train(shop: Shop, timeout: float = 1800.0) -> dict:
    job = shop.staff("POST", "/v1/staff/tenants/model/train", json={"label_source": "holdings"})
    deadline = time.monotonic() + timeout
    while True:
        status = shop.staff("GET", f"/v1/staff/jobs/{job['job']}")
        if status["status"] == "finished":
            return status["result"]
        if status["status"] in ("failed", "stopped", "canceled") or time.monotonic() > deadline:
            raise RuntimeError(f"training job: {status}")
        time.sleep(2)


# ----------------------------------------------------------------------------- test sessions


@dataclass
class Outcome:
    kind: str
    ctr: dict[str, float]  # policy -> expected click-through of its slate
    reasons: list[str] = field(default_factory=list)
    source: str = ""


def eligible_order(world: World, person: Person, score: np.ndarray, blocked: set[str]) -> list[int]:
    """The top ``N_OFFERS`` by ``score`` among offerable products, at most CAP per category."""
    taken, per = [], {}
    for j in np.argsort(-score, kind="stable"):
        pid = world.products[j]["product_id"]
        c = world.category_index[j]
        if person.held[j] or pid in blocked or per.get(c, 0) >= CAP:
            continue
        per[c] = per.get(c, 0) + 1
        taken.append(int(j))
        if len(taken) == N_OFFERS:
            break
    return taken


def session(shop: Shop, kind: str, i: int, person: Person, customer_id: str | None) -> Outcome:
    world = shop.world
    api = shop.model
    rng = np.random.default_rng([world.params.seed, KINDS.index(kind), i])
    visitor = f"t{KINDS.index(kind)}-{i}"  # one new visitor per session
    events = []
    if kind == "anonymous_zip":
        events.append(api.event("zip", zip=world.zips[person.zip_index], country="US"))
    if customer_id is not None:
        events.append(api.event("identify", customer_id=customer_id))
    w = np.exp(person.liking)
    views = rng.choice(world.n_products, size=int(rng.integers(1, 5)), p=w / w.sum())
    events += [api.event("product_view", product_id=world.products[j]["product_id"]) for j in views]
    shop.collect(visitor, events)
    truth = click_prob(person.liking)
    index = {p["product_id"]: j for j, p in enumerate(world.products)}

    def slate_ctr(offers: list[dict]) -> float:
        js = [index[o["product_id"]] for o in offers if o["product_id"] in index]
        return float(np.mean(truth[js])) if js else 0.0

    res = shop.model.session.get(shop.model.base_url + "/v1/recommend",
                                 params={"site": shop.model.site_key, "visitor": visitor,
                                         "n": N_OFFERS}, timeout=30)  # fmt: skip
    res.raise_for_status()
    body = res.json()
    model_offers = body["offers"]
    pop_offers = shop.twin.recommend(visitor, N_OFFERS)
    random_order = eligible_order(world, person, rng.random(world.n_products), set())
    best_order = eligible_order(world, person, person.liking, set())
    return Outcome(
        kind,
        {
            "model": slate_ctr(model_offers),
            "popularity": slate_ctr(pop_offers),
            "random": float(np.mean(truth[random_order])),
            "best": float(np.mean(truth[best_order])),
        },
        [o["reason_code"] for o in model_offers],
        body.get("source", ""),
    )


def run_tests(shop: Shop, customers: list[Person], per_kind: int, threads: int) -> list[Outcome]:
    world = shop.world
    jobs: list[tuple[str, int, Person, str | None]] = []
    for i in range(per_kind):
        c = int(world.rng.integers(len(customers)))
        jobs.append(("identified", i, customers[c], f"c{c}"))
        jobs.append(("anonymous_zip", i, make_person(world, customer=False), None))
        jobs.append(("anonymous_no_zip", i, make_person(world, customer=False), None))
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: session(shop, *job), jobs))


# ----------------------------------------------------------------------------- figures


def summarize(outcomes: list[Outcome], seed: int = 0, boot: int = 2000) -> dict:
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for kind in KINDS:
        rows = [o for o in outcomes if o.kind == kind]
        if not rows:
            continue
        table = {p: np.array([o.ctr[p] for o in rows]) for p in POLICIES}
        k = {}
        for p, v in table.items():
            half = 1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
            k[p] = {
                "ctr": float(v.mean()),
                "ci95": [float(v.mean() - half), float(v.mean() + half)],
            }
        idx = rng.integers(0, len(rows), size=(boot, len(rows)))
        ratios = table["model"][idx].mean(axis=1) / np.maximum(
            table["popularity"][idx].mean(axis=1), 1e-12
        )
        k["model_vs_popularity"] = {
            "ratio": float(table["model"].mean() / max(table["popularity"].mean(), 1e-12)),
            "ci95": [float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))],
        }
        codes: dict[str, int] = {}
        for o in rows:
            for c in o.reasons:
                codes[c] = codes.get(c, 0) + 1
        k["sessions"] = len(rows)
        k["model_reasons"] = codes
        k["model_sources"] = sorted({o.source.split(":")[0] for o in rows})
        out[kind] = k
    return out


def targets_met(summary: dict) -> dict[str, bool]:
    return {
        kind: summary[kind]["model_vs_popularity"]["ratio"] >= target
        for kind, target in TARGETS.items()
        if kind in summary
    }


def setup_data(data: Path) -> Callable[[Path, dict[str, str]], dict[str, str]]:
    """Demographics and segments loaded into the service's data dir before it starts."""

    def setup(workdir: Path, env: dict[str, str]) -> dict[str, str]:
        geo = workdir / "geo"
        geo.mkdir()
        shutil.copy(data / "geonames" / "US.txt", geo / "US.txt")
        extra = {"OFFERWISE_GEO_DIR": str(geo),
                 "OFFERWISE_DEMOGRAPHICS": str(data / "zcta_demographics.csv")}  # fmt: skip
        full = {**env, **extra}
        for args in (("geo", "load-demographics"), ("segments", "build", "--k", "12")):
            subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=full,
                           check=True, capture_output=True, preexec_fn=die_with_parent)  # fmt: skip
        return extra

    return setup


def simulate(params: WorldParams, data: Path, log: Callable[[str], None] = print) -> dict:
    world = make_world(params, data)
    customers = [make_person(world, customer=True) for _ in range(params.customers)]
    anonymous = [make_person(world, customer=False) for _ in range(params.anonymous)]
    timings = {}
    with (
        live_server(workers=2, threads=4, setup=setup_data(data)) as server,
        open(server.workdir / "worker.log", "wb") as worker_log,
    ):
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=server.env,
            stdout=worker_log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
        try:
            t = time.perf_counter()
            shop = Shop(server, world)
            shop.import_crm(customers)
            n_events = history(shop, customers, anonymous, params.threads)
            timings["history_s"] = round(time.perf_counter() - t, 1)
            log(f"history: {n_events} events per tenant in {timings['history_s']} s")
            t = time.perf_counter()
            cli(server, "archive", "--tenant", "model", "--tenant", "twin")
            trained = train(shop)
            timings["train_s"] = round(time.perf_counter() - t, 1)
            version = shop.staff("GET", "/v1/staff/tenants/model/models")
            log(f"trained {trained.get('version') if isinstance(trained, dict) else trained} "
                f"in {timings['train_s']} s")  # fmt: skip
            t = time.perf_counter()
            outcomes = run_tests(shop, customers, params.test, params.threads)
            timings["test_s"] = round(time.perf_counter() - t, 1)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    summary = summarize(outcomes, params.seed)
    anon = (
        (version.get("versions") or [{}])[0].get("anonymous") if isinstance(version, dict) else None
    )
    return {
        "params": vars(params),
        "summary": summary,
        "targets_met": targets_met(summary),
        "anonymous_model": anon,
        "timings": timings,
    }


def table(result: dict) -> str:
    lines = [f"{'kind':<18}" + "".join(f"{p:>22}" for p in POLICIES) + f"{'model/popularity':>28}"]
    for kind, k in result["summary"].items():
        cells = "".join(
            f"{k[p]['ctr']:>8.4f} [{k[p]['ci95'][0]:.3f},{k[p]['ci95'][1]:.3f}]" for p in POLICIES
        )
        r = k["model_vs_popularity"]
        lines.append(
            f"{kind:<18}{cells}   {r['ratio']:>6.2f}x [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--anonymous", type=int, default=3000)
    ap.add_argument("--test", type=int, default=600, help="test sessions per visitor kind")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write the results here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = shared_data()
    results = []
    for seed in range(args.seed, args.seed + args.seeds):
        params = WorldParams(args.customers, args.anonymous, args.test, seed=seed,
                             threads=args.threads)  # fmt: skip
        result = simulate(params, data)
        results.append(result)
        print(f"seed {seed}:\n{table(result)}\ntargets met: {result['targets_met']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(all(r["targets_met"].values()) for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
