"""The cold-start recommender: live popularity, nudged by the visitor's category affinities.

Popularity is the time-decayed sum of views, carts, clicks and purchases kept by the ingest
script; a visitor who has been browsing a category sees its popular products first. It is the
baseline that trained models must beat, and what a tenant without a model is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from clickstream.ingest import segment_popularity_key
from clickstream.profiles import VisitorProfile

AFFINITY_BOOST = 1.0
CANDIDATE_PAD = 50
MAX_OFFERS = 50


@dataclass
class Offer:
    product: dict
    score: float
    reason: str
    reason_code: str
    token: str = ""

    def as_dict(self) -> dict:
        p = self.product
        return {
            "product_id": p["product_id"],
            "name": p["name"],
            "category": p["category"],
            "price": p["price"],
            "url": p.get("url"),
            "image_url": p.get("image_url"),
            "score": round(self.score, 6),
            "reason": self.reason,
            "reason_code": self.reason_code,
            "token": self.token,
        }


def popularity_offers(
    r: redis.Redis,
    tenant: str,
    products: dict[str, dict],
    active_ids: tuple[str, ...],
    popular: list,
    profile: VisitorProfile,
    blocked: frozenset[str] | set[str],
    n: int,
) -> list[Offer]:
    """Segment popularity when the visitor gave a ZIP, else global popularity, then catalog."""
    local = False
    segment = profile.attributes.get("zip_segment_id")
    if segment is not None:
        # Cold start, first step: what is popular in the visitor's ZIP segment.
        by_segment = r.zrevrange(
            segment_popularity_key(tenant, segment),
            0,
            n + CANDIDATE_PAD + len(blocked),
            withscores=True,
        )
        if len(by_segment) >= n:
            popular, local = by_segment, True
    offers = PopularityRecommender._rank(products, popular, profile, blocked, n, local)
    if len(offers) < n:
        offers += PopularityRecommender._fill(
            active_ids, products, offers, blocked, n - len(offers)
        )
    return offers


class PopularityRecommender:
    """Ranking without a model (cold start); its pieces are used by ``models.recommender``."""

    @staticmethod
    def _rank(
        products: dict[str, dict],
        popular: list,
        profile: VisitorProfile,
        blocked: frozenset[str] | set[str],
        n: int,
        local: bool = False,
    ) -> list[Offer]:
        if not popular:
            return []
        top = popular[0][1] or 1.0
        scored: list[Offer] = []
        for raw_pid, stored in popular:
            pid = raw_pid.decode() if isinstance(raw_pid, bytes) else raw_pid
            product = products.get(pid)
            if product is None or pid in blocked or not product.get("active", True):
                continue
            affinity = profile.affinities.get(product["category"], 0.0)
            score = (stored / top) * (1.0 + AFFINITY_BOOST * affinity)
            if affinity >= 0.2:
                reason = f"Popular in {product['category']}, a category you have been browsing"
                code = "category_affinity"
            elif local:
                reason, code = "Popular with shoppers in your area", "segment_popularity"
            else:
                reason, code = "Popular with shoppers right now", "trending"
            scored.append(Offer(product, score, reason, code))
        scored.sort(key=lambda o: o.score, reverse=True)
        return scored[:n]

    @staticmethod
    def _fill(
        active_ids: tuple[str, ...],
        products: dict[str, dict],
        taken: list[Offer],
        blocked: frozenset[str] | set[str],
        n: int,
    ) -> list[Offer]:
        """With too little traffic to rank, offer catalog products in a stable order."""
        have = {o.product["product_id"] for o in taken} | set(blocked)
        out = []
        for pid in active_ids:
            if pid not in have:
                out.append(Offer(products[pid], 0.0, "From the catalog", "catalog"))
                if len(out) == n:
                    break
        return out
