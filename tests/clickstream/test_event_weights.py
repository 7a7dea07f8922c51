"""One table of event weights: the live ingest script and the offline rebuild both follow it.

The same events go through the ingest script (live profile) and through models.web_history
(the archive as training reads it); both must give the affinities the table predicts, for the
shipped table and for another one put in its place.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pytest
import redis

from clickstream import catalog, weights
from clickstream.decay import HALF_LIFE_S
from clickstream.ingest import Ingestor, ingest_script
from clickstream.profiles import read_profile
from models.web_history import events_frame, web_columns
from store.tenants import create_tenant, get_tenant

CATEGORY = {"p1": "shoes", "p2": "bags", "p3": "hats", "p4": "shoes"}
DAY = 86400.0
# (seconds after the start, events): three batches over nine days, so decay weighs in too;
# p1 and p3 events carry their category, p2 and p4 are looked up in the catalog.
BATCHES = [
    (0.0, [("identify", None), ("product_view", "p1"), ("add_to_cart", "p2"),
           ("purchase", "p3"), ("offer_click", "p4")]),
    (2 * DAY, [("product_view", "p2"), ("remove_from_cart", "p2"), ("page_view", None),
               ("purchase", "p4")]),
    (9 * DAY, [("add_to_cart", "p3"), ("offer_click", "p1"), ("product_view", "p4")]),
]  # fmt: skip
OTHER_TABLE = {"product_view": 4, "add_to_cart": 1, "purchase": 2.5, "remove_from_cart": 3}
SCHEMA = pa.schema(
    [("type", pa.string()), ("server_ts", pa.int64()), ("visitor", pa.string()),
     ("customer", pa.string()), ("product_id", pa.string()), ("category", pa.string())]
)  # fmt: skip


def _expected(table: dict[str, float], start: float, as_of: float) -> dict[str, float]:
    """Category shares straight from the table: decayed weighted credits."""
    credit: dict[str, float] = {}
    for offset, events in BATCHES:
        for etype, pid in events:
            if pid and etype in table:
                age = as_of - (start + offset)
                credit[CATEGORY[pid]] = credit.get(CATEGORY[pid], 0.0) + table[etype] * 2 ** (
                    -age / HALF_LIFE_S
                )
    total = sum(credit.values())
    return {c: v / total for c, v in credit.items()}


@pytest.mark.parametrize("table", [None, OTHER_TABLE], ids=["shipped", "other"])
def test_live_and_offline_affinities_follow_the_one_table(
    r: redis.Redis, monkeypatch: pytest.MonkeyPatch, table: dict[str, float] | None
) -> None:
    if table is not None:
        monkeypatch.setattr(weights, "WEIGHTS", table)
    create_tenant(r, "acme", rate_limit=10_000)
    tenant = get_tenant(r, "acme")
    assert tenant is not None
    catalog.replace_catalog(r, "acme", [
        {"product_id": pid, "name": pid, "category": cat, "price": 1.0, "active": True}
        for pid, cat in CATEGORY.items()
    ])  # fmt: skip
    ingestor = Ingestor(r)
    start = time.time()
    ids = iter(range(1000))
    archived: list[dict] = []
    for offset, events in BATCHES:
        batch = []
        for etype, pid in events:
            event: dict = {"id": f"e{next(ids)}", "type": etype, "ts": int(start * 1000)}
            if etype == "identify":
                event["customer_id"] = "C-1"
            if pid:
                event["product_id"] = pid
                if pid in ("p1", "p3"):
                    event["category"] = CATEGORY[pid]
            batch.append(event)
        archived += ingestor.ingest(tenant, "vis-1", batch, now=start + offset).accepted
    as_of = start + BATCHES[-1][0]
    want = _expected(weights.WEIGHTS, start, as_of)

    live = read_profile(r, "acme", "vis-1").affinities
    cols = web_columns(
        events_frame(pa.Table.from_pylist(archived, schema=SCHEMA)),
        [tenant.hash_customer_id("C-1")],
        as_of=as_of,
        categories=sorted(set(CATEGORY.values())),
        products=sorted(CATEGORY),
        category_of=CATEGORY,
    )
    offline = {c: cols[f"web.aff.{c}"][0] for c in set(CATEGORY.values())}
    assert live == pytest.approx(want, rel=1e-9)
    assert offline == pytest.approx(want, rel=1e-9)


def test_the_two_tables_give_different_affinities() -> None:
    # Otherwise the "other" case above could not tell a script that ignores the table.
    start, as_of = 0.0, BATCHES[-1][0]
    shipped = _expected(weights.WEIGHTS, start, as_of)
    other = _expected(OTHER_TABLE, start, as_of)
    assert shipped != pytest.approx(other, rel=1e-3)


def test_a_weight_lua_cannot_hold_is_refused() -> None:
    for bad in ({"page-view": 1}, {"view": float("nan")}, {"view": "1"}, {"x=1} os.exit()--": 1}):
        with pytest.raises(ValueError, match="cannot be written as Lua"):
            ingest_script(bad)
