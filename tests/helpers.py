"""Small builders shared by tests."""

from __future__ import annotations

import itertools
import time

_ids = itertools.count()


def now_ms() -> int:
    return int(time.time() * 1000)


def event(type_: str = "product_view", **fields: object) -> dict:
    e: dict = {"id": f"e{next(_ids)}", "type": type_, "ts": now_ms()}
    if type_ in (
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        "offer_click",
        "offer_impression",
    ):
        e["product_id"] = "p1"
    e.update(fields)
    return e


def batch(site: str, visitor: str = "v1", events: list[dict] | None = None) -> dict:
    return {"site": site, "visitor": visitor, "events": events if events is not None else [event()]}
