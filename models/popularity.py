"""The cold-start recommender: live popularity, nudged by the visitor's category affinities.

Popularity is the time-decayed sum of views, carts, clicks and purchases kept by the ingest
script; a visitor who has been browsing a category sees its popular products first. It is the
baseline that trained models must beat, and what a tenant without a model is served.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from clickstream.catalog import CatalogCache, version_key
from clickstream.ingest import popularity_key, segment_popularity_key
from clickstream.profiles import VisitorProfile, parse_profile, queue_profile_reads, with_identity
from models import tokens
from store.ratelimit import Refused, queue_rate_count
from store.tenants import Tenant

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


class PopularityRecommender:
    def __init__(self, catalogs: CatalogCache) -> None:
        self.catalogs = catalogs

    def recommend(
        self,
        r: redis.Redis,
        tenant: Tenant,
        visitor: str,
        n: int,
        *,
        exclude: frozenset[str] = frozenset(),
        track: bool = True,
        now: float | None = None,
    ) -> list[Offer]:
        now = time.time() if now is None else now
        pipe = r.pipeline(transaction=False)
        queue_rate_count(pipe, tenant.name, now)
        pipe.get(version_key(tenant.name))
        pipe.zrevrange(
            popularity_key(tenant.name), 0, n + CANDIDATE_PAD + len(exclude), withscores=True
        )
        if track:
            queue_profile_reads(pipe, tenant.name, visitor)
        replies = pipe.execute()
        if replies[0] > tenant.rate_limit:
            raise Refused("rate limit exceeded", retry_after=1)
        catalog = self.catalogs.get(r, tenant.name, int(replies[2] or 0))
        profile = (
            with_identity(r, tenant.name, parse_profile(visitor, replies[4:]))
            if track
            else VisitorProfile(visitor)
        )
        blocked = exclude | profile.cart | profile.recently_bought
        popular, local = replies[3], False
        segment = profile.attributes.get("zip_segment_id")
        if segment is not None:
            # Cold start, first step: what is popular in the visitor's ZIP segment.
            by_segment = r.zrevrange(
                segment_popularity_key(tenant.name, segment),
                0,
                n + CANDIDATE_PAD + len(exclude),
                withscores=True,
            )
            if len(by_segment) >= n:
                popular, local = by_segment, True
        offers = self._rank(catalog.products, popular, profile, blocked, n, local)
        if len(offers) < n:
            offers += self._fill(
                catalog.active_ids, catalog.products, offers, blocked, n - len(offers)
            )
        for rank, offer in enumerate(offers):
            offer.token = tokens.issue(
                tenant, visitor, offer.product["product_id"], rank, "popularity", now
            )
        return offers

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
