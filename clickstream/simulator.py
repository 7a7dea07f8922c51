"""Synthetic shoppers for demos, benchmarks and tests: batches in the collect wire format.

Each visitor has a favourite category and browses it more than others, some add to cart and a few
buy; it gives popularity and affinities a realistic shape without any real personal data.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator


def simulate(
    products: list[dict],
    visitors: int,
    seed: int = 7,
    now_ms: int | None = None,
    events_per_visitor: int = 8,
) -> Iterator[tuple[str, list[dict]]]:
    """Yields (visitor id, events) per visitor."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    by_category: dict[str, list[dict]] = {}
    for p in products:
        by_category.setdefault(p["category"], []).append(p)
    categories = sorted(by_category)
    # A few hits per category, as in real shops.
    weights = {p["product_id"]: rng.paretovariate(1.5) for p in products}
    for v in range(visitors):
        visitor = f"sim-{seed}-{v}"
        favourite = rng.choice(categories)
        events = []
        for i in range(rng.randint(1, events_per_visitor)):
            pool = by_category[favourite] if rng.random() < 0.7 else products
            product = rng.choices(pool, weights=[weights[p["product_id"]] for p in pool])[0]
            ts = now_ms - rng.randint(0, 3 * 86400 * 1000)
            events.append(
                {
                    "id": f"{visitor}-{i}-v",
                    "type": "product_view",
                    "ts": ts,
                    "product_id": product["product_id"],
                }
            )
            if rng.random() < 0.15:
                events.append(
                    {
                        "id": f"{visitor}-{i}-c",
                        "type": "add_to_cart",
                        "ts": ts + 1,
                        "product_id": product["product_id"],
                    }
                )
                if rng.random() < 0.4:
                    events.append(
                        {
                            "id": f"{visitor}-{i}-p",
                            "type": "purchase",
                            "ts": ts + 2,
                            "product_id": product["product_id"],
                            "quantity": 1,
                            "price": float(product.get("price", 0) or 0),
                        }
                    )
        yield visitor, events
