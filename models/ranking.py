"""From per-product scores to offers: expected value, eligibility, exclusions, diversity, pins.

Scores are calibrated probabilities, so expected value = score x weight (margin, price or 1) x
the product's priority is comparable across products. The rules never offer what the customer
already holds or just bought or has in the cart, respect per-product eligibility (segment,
state, identified/anonymous), keep at most k offers per category, and put pinned products first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Context:
    """What the rules need to know about the person being served."""

    identified: bool = False
    segment: int | None = None
    state: str | None = None
    blocked: set[str] = field(default_factory=set)  # held, bought, in cart, excluded by caller


@dataclass
class Ranked:
    product_id: str
    score: float
    value: float
    reason: str
    reason_code: str


def _eligible(rule: dict | None, ctx: Context) -> bool:
    if not rule:
        return True
    audience = rule.get("audience", "all")
    if (audience == "identified" and not ctx.identified) or (
        audience == "anonymous" and ctx.identified
    ):
        return False
    segments = rule.get("segments")
    if segments and (ctx.segment is None or ctx.segment not in segments):
        return False
    states = rule.get("states")
    return not (
        states and (ctx.state is None or ctx.state.upper() not in {s.upper() for s in states})
    )


def _weight(product: dict, how: str) -> float:
    if how == "none":
        return 1.0
    if how == "margin" and product.get("margin") is not None:
        return float(product["margin"])
    return float(product.get("price") or 0.0) or 1.0


def rank(
    product_ids: list[str],
    scores: np.ndarray,
    catalog: dict[str, dict],
    rules: dict,
    ctx: Context,
    n: int,
    reasons: dict[str, tuple[str, str]] | None = None,
) -> list[Ranked]:
    """Top ``n`` offers. ``reasons`` may give a (text, code) per product; else a generic one."""
    per_product = rules.get("products", {})
    how = rules.get("weight", "margin")
    reasons = reasons or {}
    candidates: list[Ranked] = []
    for pid, score in zip(product_ids, np.asarray(scores).tolist(), strict=True):
        if not offerable(pid, catalog, rules, ctx):
            continue
        rule = per_product.get(pid)
        priority = float(rule.get("priority", 1.0)) if rule else 1.0
        value = score * _weight(catalog[pid], how) * priority
        text, code = reasons.get(pid, ("Picked for you", "model"))
        candidates.append(Ranked(pid, score, value, text, code))
    candidates.sort(key=lambda c: c.value, reverse=True)
    return arrange(candidates, catalog, rules, n)


def offerable(pid: str, catalog: dict[str, dict], rules: dict, ctx: Context) -> bool:
    """In the catalog and active, not blocked for this person, eligible under the rules."""
    product = catalog.get(pid)
    if product is None or not product.get("active", True) or pid in ctx.blocked:
        return False
    return _eligible(rules.get("products", {}).get(pid), ctx)


def arrange(ordered: list[Ranked], catalog: dict[str, dict], rules: dict, n: int) -> list[Ranked]:
    """Offerable candidates, best first -> the top ``n``: pinned products first, then at most
    ``max_per_category`` per category. The model and the popularity paths both end here."""
    pinned = [p for p in rules.get("pinned", []) if p in {c.product_id for c in ordered}]
    first = [c for p in pinned for c in ordered if c.product_id == p]
    for c in first:
        c.reason, c.reason_code = "Featured by the shop", "pinned"
    first += [c for c in ordered if c.product_id not in pinned]
    cap = int(rules.get("max_per_category", 2))
    taken: list[Ranked] = []
    per_category: dict[str, int] = {}
    for c in first:
        category = catalog[c.product_id].get("category", "")
        if per_category.get(category, 0) >= cap:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        taken.append(c)
        if len(taken) == n:
            break
    return taken
