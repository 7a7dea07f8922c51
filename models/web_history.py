"""Archived events -> what each CRM customer's live profile showed at a given time, and purchases.

Training cannot read the live profiles of the past, so it rebuilds them from the Parquet archive
with the live profile's own rules (clickstream/ingest.py, clickstream/profiles.py):

- a visitor belongs to the customer named by its latest ``identify`` event;
- a profile expires after ``PROFILE_TTL_S`` without events, so only events after the last such
  gap count, and a visitor silent for longer than that at ``as_of`` has no profile at all;
- counters count events by type; first/last seen are server times in whole seconds;
- category affinities are decayed sums of weighted credits (``clickstream.weights``, half-life
  ``HALF_LIFE_S``) of the ten strongest categories, as shares;
- recent views are the last ``RECENT_ITEMS`` distinct products viewed, the cart holds products
  added and not removed or bought since, recent purchases are distinct products bought in the
  last ``RECENTLY_BOUGHT_S``.

A customer with several devices gets their events pooled (the live service merges the linked
profiles in much the same way; first/last seen then span all of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clickstream import weights
from clickstream.archive_files import Events
from clickstream.archiver import read_archive
from clickstream.decay import HALF_LIFE_S
from clickstream.profiles import PROFILE_TTL_S, RECENT_ITEMS, RECENTLY_BOUGHT_S
from models.features import WEB_COUNTERS

EVENT_COLUMNS = ("type", "ts", "server_ts", "visitor", "customer", "product_id", "category")
TOP_AFFINITIES = 10


def load_events(
    events: Events, tenant: str, start_date: str | None = None, end_date: str | None = None
) -> pd.DataFrame:
    """The tenant's archived events as a DataFrame with ``ts``, the event's time in epoch
    milliseconds (int64; see ``events_frame``)."""
    table = read_archive(events, tenant, start_date, end_date, columns=list(EVENT_COLUMNS))
    return events_frame(table)


def events_frame(table: pa.Table) -> pd.DataFrame:
    """Events with ``ts`` = when each happened: the client's time, except that an event cannot
    happen after the server received it (a client clock ahead is capped at ``server_ts``).

    Event time, not receive time: a snippet's queue sends events late (offline, retries), and
    imported history (clickstream/history_import.py) was received long after it happened, so
    "before the purchase" and the label windows must be measured on the event's own clock.
    """
    server = pc.cast(table.column("server_ts"), pa.int64())
    if "ts" in table.column_names:
        ts = pc.min_element_wise(pc.cast(table.column("ts"), pa.int64()), server)
    else:  # a table read with server_ts only
        ts = server
    frame = pd.DataFrame(
        {
            "type": table.column("type").to_pandas(),
            "ts": ts.to_numpy(),
            "visitor": table.column("visitor").to_pandas(),
            "customer": table.column("customer").to_pandas(),
            "product_id": table.column("product_id").to_pandas(),
            "category": table.column("category").to_pandas(),
        }
    )
    return frame.sort_values(["ts"], kind="stable").reset_index(drop=True)


def visitor_links(events: pd.DataFrame, until_ms: int) -> pd.Series:
    """visitor -> customer hash, from each visitor's latest identify event up to ``until_ms``."""
    ident = events[(events["type"] == "identify") & events["customer"].notna()]
    ident = ident[ident["ts"] <= until_ms]
    return ident.groupby("visitor", sort=False)["customer"].last()


def _linked(events: pd.DataFrame, until_ms: int) -> pd.DataFrame:
    links = visitor_links(events, until_ms)
    ev = events[events["ts"] <= until_ms]
    ev = ev.assign(cust=ev["visitor"].map(links))
    return ev[ev["cust"].notna()]


def _current_lives(ev: pd.DataFrame, as_of_ms: int) -> pd.DataFrame:
    """Only events of each visitor's live profile: after its last inactivity gap, if still live."""
    ttl_ms = PROFILE_TTL_S * 1000
    ev = ev.sort_values(["visitor", "ts"], kind="stable")
    gap = ev["ts"].diff()
    new_life = (ev["visitor"] != ev["visitor"].shift()) | (gap > ttl_ms)
    life = new_life.cumsum()
    last_life = life.groupby(ev["visitor"]).transform("max")
    ev = ev[life == last_life]
    last_ts = ev.groupby("visitor")["ts"].transform("max")
    return ev[last_ts >= as_of_ms - ttl_ms]


def web_columns(
    events: pd.DataFrame,
    customer_keys: Sequence[str] | pa.Array | pa.ChunkedArray | np.ndarray,
    *,
    as_of: float,
    categories: Sequence[str],
    products: Sequence[str],
    category_of: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Raw ``web.*`` columns (and ``has_web``) aligned with ``customer_keys`` at ``as_of``."""
    keys = _keys(customer_keys)
    n = len(keys)
    as_of_ms = int(as_of * 1000)
    ev = _current_lives(_linked(events, as_of_ms), as_of_ms)
    cust_index = pd.Index(keys)
    row = cust_index.get_indexer(ev["cust"])
    ev = ev.assign(row=row)
    ev = ev[ev["row"] >= 0]
    out: dict[str, np.ndarray] = {}
    has = np.zeros(n)
    has[ev["row"].unique()] = 1.0
    out["has_web"] = has

    # The visitor the service would be serving: the customer's most recently active one. Its
    # own first/last seen and recent views lead, as in ``with_identity``'s merge.
    ev = ev.sort_values("ts", kind="stable")
    primary = ev.groupby("row")["visitor"].last()
    ev = ev.assign(primary=(ev["visitor"] == ev["row"].map(primary)).to_numpy())

    counts = ev.groupby(["row", "type"]).size()
    for t in WEB_COUNTERS:
        col = np.zeros(n)
        if len(counts):
            sel = counts.xs(t, level="type") if t in counts.index.get_level_values("type") else None
            if sel is not None:
                col[sel.index.to_numpy()] = sel.to_numpy()
        out[f"web.n_{t}"] = col
    own = ev[ev["primary"]]
    seen = own.groupby("row")["ts"].agg(["min", "max"])
    first, last = np.full(n, np.nan), np.full(n, np.nan)
    first[seen.index.to_numpy()] = (seen["min"].to_numpy() // 1000).astype(np.float64)
    last[seen.index.to_numpy()] = (seen["max"].to_numpy() // 1000).astype(np.float64)
    out["web.first_seen"], out["web.last_seen"] = first, last

    out.update(_affinities(ev, n, as_of, categories, category_of or {}))
    out.update(_recent_views(ev, n, products))
    out["web.cart_count"] = _cart_sizes(ev, n)
    recent = ev[(ev["type"] == "purchase") & ev["product_id"].notna()]
    last_buy = recent.groupby(["row", "product_id"])["ts"].max()
    last_buy = last_buy[last_buy // 1000 >= as_of - RECENTLY_BOUGHT_S]
    bought = np.zeros(n)
    if len(last_buy):
        per_row = last_buy.groupby(level="row").size()
        bought[per_row.index.to_numpy()] = per_row.to_numpy()
    out["web.bought_count"] = bought
    return out


def _keys(customer_keys) -> np.ndarray:
    if isinstance(customer_keys, pa.ChunkedArray | pa.Array):
        return np.asarray(customer_keys.to_pylist(), dtype=object)
    return np.asarray(customer_keys, dtype=object)


def _affinities(
    ev: pd.DataFrame,
    n: int,
    as_of: float,
    categories: Sequence[str],
    category_of: Mapping[str, str],
) -> dict[str, np.ndarray]:
    weight = ev["type"].map(weights.WEIGHTS)
    credited = ev[weight.notna() & ev["product_id"].notna()]
    w = weight[credited.index].to_numpy(dtype=np.float64)
    cat = credited["category"].where(
        credited["category"].notna() & (credited["category"] != ""),
        credited["product_id"].map(category_of),
    )
    ok = cat.notna().to_numpy() & (cat != "").to_numpy()
    frame = pd.DataFrame(
        {
            "visitor": credited["visitor"].to_numpy()[ok],
            "row": credited["row"].to_numpy()[ok],
            "cat": cat.to_numpy()[ok],
            # As the live store: credit x 2**(t / half-life), read back divided by 2**(now / hl).
            "v": w[ok] * np.exp2((credited["ts"].to_numpy()[ok] / 1000.0 - as_of) / HALF_LIFE_S),
        }
    )
    out = {f"web.aff.{c}": np.zeros(n) for c in categories}
    if frame.empty:
        return out
    # Each visitor's profile keeps its ten strongest categories as shares; linked profiles
    # are merged by adding the shares and normalizing again.
    sums = frame.groupby(["visitor", "row", "cat"], sort=False)["v"].sum().reset_index()
    sums = sums.sort_values(["visitor", "v"], ascending=[True, False], kind="stable")
    sums = sums[sums.groupby("visitor").cumcount() < TOP_AFFINITIES]
    total = sums.groupby("visitor")["v"].transform("sum")
    sums = sums.assign(share=np.where(total > 0, sums["v"] / total.where(total > 0, 1.0), 0.0))
    merged = sums.groupby(["row", "cat"], sort=False)["share"].sum().reset_index()
    norm = merged.groupby("row")["share"].transform("sum")
    merged = merged.assign(share=merged["share"] / norm.where(norm > 0, 1.0))
    wanted = merged[merged["cat"].isin(list(categories))]
    for c, part in wanted.groupby("cat"):
        out[f"web.aff.{c}"][part["row"].to_numpy()] = part["share"].to_numpy()
    return out


def _recent_views(ev: pd.DataFrame, n: int, products: Sequence[str]) -> dict[str, np.ndarray]:
    views = ev[(ev["type"] == "product_view") & ev["product_id"].notna()]
    # Per visitor the newest views first; the serving visitor's list leads, the linked ones'
    # follow (products not yet listed), as ``merge_profiles`` does.
    last = views.groupby(["row", "visitor", "product_id"])["ts"].max().reset_index()
    lead = last["visitor"].map(views.groupby("visitor")["primary"].first()).astype(bool)
    last = last.assign(lead=lead.to_numpy())
    last = last.sort_values(["row", "lead", "ts"], ascending=[True, False, False], kind="stable")
    last = last.drop_duplicates(["row", "product_id"], keep="first")
    last = last[last.groupby("row").cumcount() < RECENT_ITEMS]
    out = {f"web.viewed.{p}": np.zeros(n) for p in products}
    count = np.zeros(n)
    if len(last):
        per_row = last.groupby("row").size()
        count[per_row.index.to_numpy()] = per_row.to_numpy()
        for p, part in last[last["product_id"].isin(list(products))].groupby("product_id"):
            out[f"web.viewed.{p}"][part["row"].to_numpy()] = 1.0
    out["web.recent_count"] = count
    return out


def _cart_sizes(ev: pd.DataFrame, n: int) -> np.ndarray:
    moves = ev[ev["type"].isin(["add_to_cart", "remove_from_cart", "purchase"])]
    moves = moves[moves["product_id"].notna()]
    sizes = np.zeros(n)
    if moves.empty:
        return sizes
    # Each device has its own cart; the merged profile shows their union.
    last = moves.groupby(["row", "visitor", "product_id"])["type"].last().reset_index()
    held = last[last["type"] == "add_to_cart"].drop_duplicates(["row", "product_id"])
    in_cart = held.groupby("row").size()
    sizes[in_cart.index.to_numpy()] = in_cart.to_numpy()
    return sizes


def purchases(
    events: pd.DataFrame,
    customer_keys,
    products: Sequence[str],
    *,
    after_ms: int | None,
    until_ms: int,
) -> np.ndarray:
    """(customers, products) bool: bought in (after_ms, until_ms] by a linked visitor."""
    keys = _keys(customer_keys)
    links = visitor_links(events, until_ms)
    buys = events[(events["type"] == "purchase") & (events["ts"] <= until_ms)]
    if after_ms is not None:
        buys = buys[buys["ts"] > after_ms]
    cust = buys["visitor"].map(links)
    # get_indexer makes an Index of a Series itself; its type asks for the Index.
    row = pd.Index(keys).get_indexer(pd.Index(cust.where(cust.notna(), None)))
    col = pd.Index(list(products)).get_indexer(pd.Index(buys["product_id"]))
    ok = (row >= 0) & (col >= 0)
    out = np.zeros((len(keys), len(products)), dtype=bool)
    out[row[ok], col[ok]] = True
    return out
