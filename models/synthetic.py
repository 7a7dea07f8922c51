"""A synthetic tenant whose buyers depend on known rules: the test bed of the propensity models.

Customers live at real US ZIP codes (drawn from the loaded demographics table, weighted by
population) and have CRM attributes (age, income, channel, vip, customer_since). Each product has
a true log-odds of being held built from four kinds of signal, several of them non-linear on
purpose (a logistic regression cannot represent them, boosted trees can):

- pattern 0 "premium": high-wage *and* dense ZIPs (an interaction), vip, age over 50;
- pattern 1 "age xor income": under-45s with low income, or over-45s with high income;
- pattern 2 "cross-sell": holding the previous product, but only for customers of 3+ years;
- pattern 3 "rural": low-density ZIP *and* above-median income, store channel.

Products beyond four cycle through the patterns with their own offsets. Holdings are drawn
product by product (so cross-sell sees the earlier products). Identified web visitors view
products in proportion to their propensity, fill carts and buy; purchases in the last
``label_days`` (the label window) depend on the propensity and on how much the product was
viewed before. ``dead_products`` catalog products are never held nor bought (no positives).

``generate`` makes the data (no I/O); ``install`` creates the tenant for real: catalog, CRM
import, events through the ingest path (with their simulated server times) and the archiver.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import redis

from enrichment.demographics import demographics
from models.features import ZipLookup
from store import keys
from store.artifacts import events_store
from store.config import Settings

DAY_S = 86_400


class SyntheticError(ValueError):
    """The synthetic tenant cannot be made (e.g. no demographics table loaded)."""


@dataclass
class SyntheticConfig:
    customers: int = 4000
    products: int = 4
    dead_products: int = 1
    categories: int = 3
    web_share: float = 0.6  # customers with an identified web visitor
    two_device_share: float = 0.1  # of those, with a second device
    sessions: float = 3.0  # mean sessions per visitor in the feature window
    days: int = 90  # history span, ending at ``end_time``
    label_days: int = 30  # last days: the purchase label window
    extra_numeric: int = 0  # noise attributes (bench width)
    extra_categorical: int = 0
    seed: int = 7
    end_time: float | None = None  # default: now


@dataclass
class SyntheticTenant:
    config: SyntheticConfig
    customer_ids: list[str]
    zips: list[str]
    products: list[str]  # live products first, then the dead ones
    categories: list[str]
    catalog: list[dict]
    customers: pa.Table  # as the CRM extract (customer_id, zip, attributes)
    holdings: pa.Table  # customer_id, product_id, quantity
    p_hold: np.ndarray  # (customers, products) true probability of holding
    holds: np.ndarray  # (customers, products) bool
    p_buy: np.ndarray  # (customers, products) true probability of buying in the label window
    bought: np.ndarray  # (customers, products) bool, bought in the label window
    has_web: np.ndarray  # (customers,) bool
    sessions: list[tuple[str, float, list[dict]]]  # (visitor, server time, events), time order
    start_time: float
    end_time: float
    cutoff_time: float  # start of the label window
    report: dict = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return sum(len(events) for _, _, events in self.sessions)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _zips(settings: Settings, n: int, rng: np.random.Generator) -> list[str]:
    table = demographics(settings)
    if table is None:
        raise SyntheticError(
            "no demographics table loaded: run `offerwise geo load-demographics` first "
            "(the synthetic tenant lives at real ZIP codes)"
        )
    pop = np.nan_to_num(np.asarray(table.values[:, 0], dtype=np.float64))
    ok = pop >= max(table.min_population, 1)
    rows = np.flatnonzero(ok)
    weights = pop[rows] / pop[rows].sum()
    picked = rng.choice(rows, size=n, p=weights)
    return [f"{int(z):05d}" for z in np.asarray(table.zips)[picked]]


def _zip_figures(zips: list[str], settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Standardized log wages and log density of each customer's ZIP, as the features see them."""
    lookup = ZipLookup(settings)
    wages, dens = np.empty(len(zips)), np.empty(len(zips))
    cache: dict[str, tuple[float, float]] = {}
    for i, z in enumerate(zips):
        if z not in cache:
            b = lookup.block(z) or {}
            density = b.get("demo_log_density")
            cache[z] = (
                float(b.get("demo_wages_per_resident_usd") or np.nan),
                float(density if density is not None else np.nan),
            )
        wages[i], dens[i] = cache[z]
    lw = np.log(np.where(wages > 0, wages, np.nan))
    lw = np.where(np.isnan(lw), np.nanmedian(lw), lw)
    dens = np.where(np.isnan(dens), np.nanmedian(dens), dens)
    return (lw - lw.mean()) / (lw.std() or 1), (dens - dens.mean()) / (dens.std() or 1)


def generate(config: SyntheticConfig, settings: Settings) -> SyntheticTenant:
    """The synthetic tenant's data (nothing written anywhere)."""
    c = config
    rng = np.random.default_rng(c.seed)
    n, P = c.customers, c.products
    end = float(c.end_time if c.end_time is not None else time.time())
    start = end - c.days * DAY_S
    cutoff = end - c.label_days * DAY_S
    zips = _zips(settings, n, rng)
    w, dens = _zip_figures(zips, settings)

    age = rng.integers(18, 81, size=n).astype(np.float64)
    income = np.round(np.exp(10.6 + 0.35 * w + rng.normal(0, 0.4, n)), -2)
    channel = rng.choice(["store", "web", "phone", "partner"], size=n, p=[0.4, 0.35, 0.15, 0.1])
    vip = rng.random(n) < 0.15
    tenure = rng.uniform(0, 15, n)
    end_date = dt.datetime.fromtimestamp(end, dt.UTC).date()
    since = [end_date - dt.timedelta(days=int(t * 365.25)) for t in tenure]
    # A few missing values, as real extracts have.
    age_out = np.where(rng.random(n) < 0.03, np.nan, age)
    ids = [f"C{i:07d}" for i in range(n)]

    products = [f"p{j}" for j in range(P)] + [f"dead{j}" for j in range(c.dead_products)]
    categories = [f"cat{k}" for k in range(max(1, c.categories))]
    logits = np.zeros((n, P))
    holds = np.zeros((n, len(products)), dtype=bool)
    p_hold = np.zeros((n, len(products)))
    med_income = np.median(income)
    for j in range(P):
        pattern = j % 4
        shift = 0.3 * (j // 4)
        if pattern == 0:
            z = -2.8 + 2.2 * ((w > 0.3) & (dens > 0.0)) + 1.4 * vip + 1.0 * (age > 50)
        elif pattern == 1:
            z = -2.2 + 2.4 * np.logical_xor(age < 45, income > med_income) + 0.3 * w
        elif pattern == 2:
            prev = holds[:, j - 1] if j > 0 else vip
            z = -2.6 + 2.6 * (prev & (tenure > 3)) + 0.5 * (channel == "web")
        else:
            z = -2.6 + 2.4 * ((dens < -0.3) & (income > med_income)) + 1.0 * (channel == "store")
        logits[:, j] = z - shift
        p_hold[:, j] = _sigmoid(logits[:, j])
        holds[:, j] = rng.random(n) < p_hold[:, j]

    # Web behaviour of identified visitors.
    has_web = rng.random(n) < c.web_share
    interest = _sigmoid(logits + rng.normal(0, 0.7, (n, P)))
    views_before = np.zeros((n, P))
    p_buy = np.zeros((n, len(products)))
    bought = np.zeros((n, len(products)), dtype=bool)
    catalog = [
        {"product_id": p, "name": f"Product {p}", "category": categories[j % len(categories)],
         "price": float(20 + 5 * j), "margin": float(4 + j % 5), "url": None,
         "image_url": None, "active": True}
        for j, p in enumerate(products)
    ]  # fmt: skip
    sessions: list[tuple[str, float, list[dict]]] = []
    event_no = 0
    for i in np.flatnonzero(has_web):
        visitors = [f"v{i:07d}a"] + ([f"v{i:07d}b"] if rng.random() < c.two_device_share else [])
        n_sess = 1 + rng.poisson(max(c.sessions - 1, 0))
        times = np.sort(rng.uniform(start, cutoff, n_sess))
        view_rate = 0.2 + 3.0 * interest[i] / n_sess
        identified: set[str] = set()
        for s, t in enumerate(times):
            visitor = visitors[s % len(visitors)]
            events: list[dict] = []
            if visitor not in identified:
                events.append({"type": "identify", "customer_id": ids[i]})
                identified.add(visitor)
            events += [{"type": "page_view"} for _ in range(int(rng.poisson(1.5)))]
            if rng.random() < 0.3:
                events.append({"type": "search", "query": "gift"})
            views = rng.poisson(view_rate)
            for j in np.flatnonzero(views).tolist():
                events += [
                    {"type": "product_view", "product_id": products[j]}
                    for _ in range(int(views[j]))
                ]
                views_before[i, j] += views[j]
                if rng.random() < 0.25 * interest[i, j]:
                    events.append({"type": "add_to_cart", "product_id": products[j]})
                    if rng.random() < 0.4:
                        events.append({"type": "purchase", "product_id": products[j]})
            sessions.append((visitor, float(t), events))
        # The label window: buying depends on propensity and on the views before it.
        p_buy[i, :P] = _sigmoid(logits[i] - 1.6 + 0.9 * np.log1p(views_before[i]))
        buys = rng.random(P) < p_buy[i, :P]
        for j in np.flatnonzero(buys).tolist():
            t = float(rng.uniform(cutoff + 60, end - 60))
            sessions.append(
                (visitors[0], t, [
                    {"type": "product_view", "product_id": products[j]},
                    {"type": "purchase", "product_id": products[j], "quantity": 1},
                ])
            )  # fmt: skip
        bought[i, :P] = buys
    sessions.sort(key=lambda s: s[1])
    for visitor, t, events in sessions:
        for e in events:
            event_no += 1
            e["id"] = f"{visitor}-{event_no}"
            e["ts"] = int(t * 1000)

    columns: dict[str, object] = {
        "customer_id": ids,
        "zip": zips,
        "age": pa.array(age_out, from_pandas=True),  # NaN -> empty cell
        "income": income,
        "channel": channel,
        "vip": np.where(vip, "yes", "no"),
        "customer_since": [d.isoformat() for d in since],
    }
    for k in range(c.extra_numeric):
        columns[f"x{k}"] = np.round(rng.normal(0, 1, n), 4)
    for k in range(c.extra_categorical):
        columns[f"k{k}"] = rng.choice([f"l{m}" for m in range(6)], size=n)
    customers = pa.table(columns)
    hi, hj = np.nonzero(holds)
    holdings = pa.table(
        {
            "customer_id": [ids[i] for i in hi],
            "product_id": [products[j] for j in hj],
            "quantity": np.ones(len(hi)),
        }
    )
    return SyntheticTenant(
        config=c, customer_ids=ids, zips=zips, products=products, categories=categories,
        catalog=catalog, customers=customers, holdings=holdings, p_hold=p_hold, holds=holds,
        p_buy=p_buy, bought=bought, has_web=has_web, sessions=sessions, start_time=start,
        end_time=end, cutoff_time=cutoff,
    )  # fmt: skip


def _csv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def install(
    r: redis.Redis,
    settings: Settings,
    tenant: str,
    data: SyntheticTenant,
    *,
    archive: bool = True,
) -> dict:
    """Make ``data`` a real tenant: tenant record, catalog, CRM version, events, archive."""
    from clickstream import catalog as catalog_store
    from clickstream.archiver import Archiver
    from clickstream.ingest import Ingestor
    from enrichment.crm import ImportOptions, import_crm
    from store.tenants import create_tenant, get_tenant, update_tenant

    started = time.perf_counter()
    if get_tenant(r, tenant) is None:
        create_tenant(r, tenant, ["https://shop.example"], rate_limit=1_000_000_000)
        # Customer hashes decide the train/validation/holdout split: a secret derived from the
        # seed makes a synthetic tenant's split, hence its metrics, the same on every run.
        secret = hashlib.sha256(f"offerwise-synthetic:{data.config.seed}".encode()).hexdigest()
        r.hset(keys.tenant_config(tenant), "id_secret", secret)
        # A world built to measure the model serves it to everyone: no tenant-wide holdout.
        update_tenant(r, tenant, holdout_share=0.0)
    t = get_tenant(r, tenant)
    assert t is not None
    catalog_store.replace_catalog(r, tenant, data.catalog)
    crm = import_crm(
        r, tenant, _csv_bytes(data.customers), _csv_bytes(data.holdings),
        options=ImportOptions(id_column="customer_id", max_reject_rate=0.0),
        settings=settings, customers_name="customers.csv", holdings_name="holdings.csv",
    )  # fmt: skip
    crm_seconds = time.perf_counter() - started
    ingestor = Ingestor(r)
    for visitor, t_s, events in data.sessions:
        for k in range(0, len(events), 100):
            ingestor.ingest(t, visitor, events[k : k + 100], now=t_s)
    ingest_seconds = time.perf_counter() - started - crm_seconds
    archived = None
    if archive:
        result = Archiver(r, events_store(settings)).archive_tenant(tenant)
        archived = result.events
    data.report = {
        "tenant": tenant,
        "customers": data.config.customers,
        "products": data.products,
        "crm_version": crm.get("version"),
        "events": data.n_events,
        "archived": archived,
        "seconds": {
            "crm_import": round(crm_seconds, 2),
            "ingest": round(ingest_seconds, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }
    return data.report
