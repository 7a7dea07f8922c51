"""The demo's people: a CRM extract of customers at real ZIP codes with their holdings, and the
web traffic of shoppers in a few ZIP segments, each segment with tastes of its own.

Nothing here writes anywhere (``app.demo.setup`` installs it through the real import, collect
and archive paths). The people are made up; only the ZIP codes and their segments are real,
drawn from the census table and the segmentation built from it, weighted by population.
A fixed seed makes every install the same shop.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from app.demo.products import CATEGORIES, PRODUCTS, Product
from enrichment.demographics import DemographicsTable
from enrichment.segments import Segmentation

DAY_S = 86_400
MIN_SEGMENT_SHARE = 0.004  # of the population: a segment with ZIPs enough to draw from

# The stories the demo tells: which segment (picked by its centre in standardised census
# figures) likes which categories. The first key of each list found in the segmentation wins.
THEMES = (
    ("city", ("log_density",), max, ("running", "travel")),
    ("waterside", ("water_share",), max, ("paddling", "outerwear")),
    ("country", ("log_density",), min, ("camping", "outerwear")),
    ("affluent", ("median_household_income_usd", "wages_per_resident_usd"), max,
     ("climbing", "outerwear")),
)  # fmt: skip


@dataclass
class DemoSegment:
    id: int
    theme: str
    label: str
    tastes: tuple[str, ...]
    zips: np.ndarray  # populated ZIP codes of the segment (int)
    weights: np.ndarray  # their population shares
    example_zip: str  # the most populous one, for the shop page's "try this ZIP"


@dataclass
class DemoWorld:
    segments: list[DemoSegment]
    customers: pa.Table  # the CRM extract: customer_id, zip, age, channel, vip, customer_since
    holdings: pa.Table  # customer_id, product_id, quantity
    # (visitor, epoch seconds, events in the collect wire format), oldest first.
    sessions: list[tuple[str, float, list[dict]]]
    tastes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # customer id -> tastes

    @staticmethod
    def csv(table: pa.Table) -> bytes:
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return sink.getvalue()


def pick_segments(seg: Segmentation, table: DemographicsTable) -> list[DemoSegment]:
    """One segment per theme, each different, among those big enough to draw people from."""
    big = [s for s in seg.segments if s.get("population_share", 0) >= MIN_SEGMENT_SHARE]
    pop = np.nan_to_num(np.asarray(table.values[:, 0], dtype=np.float64))
    zips = np.asarray(table.zips).astype(np.int64)
    populated = pop >= max(table.min_population, 1)
    of_zip = np.asarray(seg.assign)[zips]
    chosen: list[DemoSegment] = []
    for theme, names, best, tastes in THEMES:
        left = [s for s in big if s["id"] not in {c.id for c in chosen}]
        key = next((n for n in names if left and n in left[0]["center_z"]), None)
        if key is None or not left:
            continue
        s = best(left, key=lambda s, k=key: s["center_z"][k])
        rows = np.flatnonzero(populated & (of_zip == s["id"]))
        if not len(rows):
            continue
        w = pop[rows] / pop[rows].sum()
        top = int(zips[rows[np.argmax(pop[rows])]])
        chosen.append(DemoSegment(s["id"], theme, s["label"], tastes, zips[rows], w, f"{top:05d}"))
    return chosen


def _held(rng: np.random.Generator, tastes: tuple[str, ...], n: int) -> list[Product]:
    """``n`` products a person with these tastes holds: mostly of their categories."""
    mine = [p for p in PRODUCTS if p.category in tastes]
    picked: dict[str, Product] = {}
    for _ in range(n * 3):
        pool = mine if rng.random() < 0.8 else PRODUCTS
        p = pool[int(rng.integers(len(pool)))]
        picked[p.id] = p
        if len(picked) == n:
            break
    return list(picked.values())


def _browse(
    rng: np.random.Generator,
    visitor: str,
    t: float,
    tastes: tuple[str, ...],
    first: list[dict],
    looked_at: Sequence[Product] = (),
) -> list[dict]:
    """One session's events: views mostly in the visitor's categories, some carts and buys."""
    events = [*first, {"type": "page_view"}]
    events += [{"type": "product_view", "product_id": p.id, "category": p.category}
               for p in looked_at]  # fmt: skip
    mine = [p for p in PRODUCTS if p.category in tastes]
    for _ in range(int(rng.integers(2, 7))):
        pool = mine if rng.random() < 0.9 else PRODUCTS
        p = pool[int(rng.integers(len(pool)))]
        events.append({"type": "product_view", "product_id": p.id, "category": p.category})
        if rng.random() < 0.2:
            events.append({"type": "add_to_cart", "product_id": p.id})
            if rng.random() < 0.5:
                events.append(
                    {"type": "purchase", "product_id": p.id, "quantity": 1, "price": p.price}
                )
    for i, e in enumerate(events):
        e["id"] = f"{visitor}-{int(t)}-{i}"
        e["ts"] = int(t * 1000) + i
    return events


def generate(
    seg: Segmentation,
    table: DemographicsTable,
    *,
    customers: int = 1200,
    visitors: int = 1000,
    now: float,
    seed: int = 14,
) -> DemoWorld:
    rng = np.random.default_rng(seed)
    segments = pick_segments(seg, table)
    if not segments:
        raise ValueError("no segment big enough for the demo: build segments first")
    categories = [c.id for c in CATEGORIES]

    def draw_zip(s: DemoSegment) -> str:
        return f"{int(rng.choice(s.zips, p=s.weights)):05d}"

    rows: dict[str, list] = {k: [] for k in
                             ("customer_id", "zip", "age", "channel", "vip", "customer_since")}  # fmt: skip
    hold: dict[str, list] = {"customer_id": [], "product_id": [], "quantity": []}
    sessions: list[tuple[str, float, list[dict]]] = []
    tastes_of: dict[str, tuple[str, ...]] = {}
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    for i in range(customers):
        cid = f"D-{i:04d}"
        s = segments[i % len(segments)]
        tastes = s.tastes if rng.random() < 0.8 else (categories[int(rng.integers(6))],)
        rows["customer_id"].append(cid)
        tastes_of[cid] = tastes
        rows["zip"].append(draw_zip(s))
        # Many extracts know little of some customers: their blanks also teach the models
        # what to do with a visitor the CRM does not know at all.
        known = rng.random() < 0.6
        age = int(rng.integers(18, 80))
        channel = str(rng.choice(["web", "store", "phone"], p=[0.5, 0.4, 0.1]))
        since = today - dt.timedelta(days=int(rng.integers(30, 3650)))
        rows["age"].append(age if known else None)
        rows["channel"].append(channel if known else None)
        rows["vip"].append(("yes" if rng.random() < 0.15 else "no") if known else None)
        rows["customer_since"].append(since.isoformat() if known else None)
        held = _held(rng, tastes, 1 + int(rng.poisson(1.5)))
        for p in held:
            hold["customer_id"].append(cid)
            hold["product_id"].append(p.id)
            hold["quantity"].append(1)
        if rng.random() < 0.8:  # a web visitor who logs in: behaviour the models learn from
            visitor = f"demo-c{i:04d}"
            first = [{"type": "identify", "customer_id": cid}]
            # Some of what they hold, they looked at on the shop once.
            looked_at = [p for p in held if rng.random() < 0.3]
            for _ in range(2 + int(rng.poisson(1.0))):
                t = now - float(rng.uniform(1, 60)) * DAY_S
                sessions.append((visitor, t, _browse(rng, visitor, t, tastes, first, looked_at)))
                first, looked_at = [], []
    # Anonymous shoppers who gave their ZIP: what the anonymous visitors' model learns each
    # segment's tastes from (250 a segment by default; with 100, the offers for a city ZIP
    # owed nothing to the ZIP in some installs, by the explanation of their scores).
    for v in range(visitors):
        s = segments[v % len(segments)]
        visitor = f"demo-v{v:04d}"
        t = now - float(rng.uniform(0.1, 20)) * DAY_S
        # The ZIP first, in a batch of its own, as the snippet sends it when typed: the
        # browsing after it then counts for the visitor's segment too.
        zip_event = {"type": "zip", "zip": draw_zip(s), "country": "US",
                     "id": f"{visitor}-zip", "ts": int(t * 1000) - 1}  # fmt: skip
        sessions.append((visitor, t - 1, [zip_event]))
        sessions.append((visitor, t, _browse(rng, visitor, t, s.tastes, [])))
    sessions.sort(key=lambda x: x[1])
    return DemoWorld(segments, pa.table(rows), pa.table(hold), sessions, tastes_of)


def showcase(world: DemoWorld, group_of: Callable[[str], str], offer: str) -> list[dict]:
    """One customer per segment, with the segment's tastes and a few holdings, for the shop's
    login list; ``group_of(customer id)`` is their group in the running campaign (offering the
    product ``offer``, which none of them holds or has put in a cart), and the last one listed
    is, where one can be found, in its control group (the others treated)."""
    held: dict[str, list[str]] = {}
    for cid, pid in zip(
        world.holdings.column("customer_id").to_pylist(),
        world.holdings.column("product_id").to_pylist(),
        strict=True,
    ):
        held.setdefault(cid, []).append(pid)
    ids = world.customers.column("customer_id").to_pylist()
    zips = world.customers.column("zip").to_pylist()
    ages = world.customers.column("age").to_pylist()  # None: the CRM knows only their ZIP
    # Who put the offer in their cart on the shop, bought or not: it is never offered to them
    # (in the cart, or bought lately), so the campaign could not show it. "demo-c0012" is D-0012.
    touched = {
        f"D-{visitor[len('demo-c') :]}"
        for visitor, _, events in world.sessions
        if visitor.startswith("demo-c")
        for e in events
        if e["type"] in ("add_to_cart", "purchase") and e.get("product_id") == offer
    }
    out = []
    last = len(world.segments) - 1
    for k, s in enumerate(world.segments):
        wanted = "control" if k == last else "treated"
        fits = [
            i for i in range(k, len(ids), len(world.segments))
            if world.tastes.get(ids[i]) == s.tastes and 2 <= len(held.get(ids[i], [])) <= 3
            and offer not in held[ids[i]] and ids[i] not in touched and ages[i] is not None
            and group_of(ids[i]) != "holdout"
        ]  # fmt: skip
        best = next((i for i in fits if group_of(ids[i]) == wanted), fits[0] if fits else None)
        if best is not None:
            out.append({"customer_id": ids[best], "zip": zips[best], "segment": s.label,
                        "theme": s.theme, "holdings": held[ids[best]],
                        "campaign_group": group_of(ids[best])})  # fmt: skip
    return out
