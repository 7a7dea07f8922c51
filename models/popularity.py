"""The cold-start recommender: live popularity, nudged by the visitor's category affinities.

Popularity is the time-decayed sum of views, carts, clicks and purchases kept by the ingest
script; a visitor who has been browsing a category sees its popular products first. It is the
baseline that trained models must beat, and what a tenant without a model is served.
"""

from __future__ import annotations

import time
from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

import redis

from clickstream.ingest import segment_popularity_key
from clickstream.profiles import VisitorProfile
from store.redis_client import reply_text

AFFINITY_BOOST = 1.0
CANDIDATE_PAD = 50
MAX_OFFERS = 50
# Enough candidates for the largest request: n <= MAX_OFFERS, 50 excluded ids, CANDIDATE_PAD.
SNAPSHOT_SIZE = MAX_OFFERS + 50 + CANDIDATE_PAD + 10
MAX_SNAPSHOTS = 10_000


@dataclass
class Offer:
    product: dict
    score: float
    reason: str
    reason_code: str
    token: str = ""
    # Set by the decision layer (campaigns/): the campaign that placed it (name), and for the
    # token, the campaign id and the person's group; the score's decile on the product's model.
    campaign: str | None = None
    campaign_id: str | None = None
    group: str | None = None
    decile: int | None = None

    def as_dict(self) -> dict:
        p = self.product
        out = {
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
        if self.campaign is not None:
            out["campaign"] = self.campaign
        return out


class PopularitySnapshots:
    """This process's copies of the top of each popularity set, at most ``ttl`` seconds old.

    Every offer request needs the top of the tenant's popularity set; reading and decoding it
    from Redis on each request cost more than the rest of the cold-start ranking. Popularity
    decays over hours, so a copy a second old ranks the same products.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, list[tuple[str, float]]]] = {}
        # The last copy read of each set whatever its age, for answers while the store is away.
        self._last: dict[str, list[tuple[str, float]]] = {}

    def fresh(self, key: str) -> list[tuple[str, float]] | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[0] > self.ttl:
            return None
        return entry[1]

    def store(self, key: str, reply: list) -> list[tuple[str, float]]:
        top = [(reply_text(pid), float(score)) for pid, score in reply]
        if len(self._last) >= MAX_SNAPSHOTS:
            self._last.clear()
        self._last[key] = top
        if self.ttl > 0:
            if len(self._entries) >= MAX_SNAPSHOTS:
                self._entries.clear()
            self._entries[key] = (self._clock(), top)
        return top

    def last(self, key: str) -> list[tuple[str, float]] | None:
        """The last copy this process read of ``key``, however old (None: never read)."""
        return self._last.get(key)

    def get(self, r: redis.Redis, key: str) -> list[tuple[str, float]]:
        top = self.fresh(key)
        if top is None:
            top = self.store(key, r.zrevrange(key, 0, SNAPSHOT_SIZE - 1, withscores=True))
        return top


def popularity_offers(
    r: redis.Redis,
    snapshots: PopularitySnapshots,
    tenant: str,
    products: dict[str, dict],
    active_ids: tuple[str, ...],
    popular: list[tuple[str, float]],
    profile: VisitorProfile,
    blocked: frozenset[str] | set[str],
    n: int,
) -> list[Offer]:
    """Segment popularity when the visitor gave a ZIP, else global popularity, then catalog."""
    local = False
    segment = profile.attributes.get("zip_segment_id")
    if segment is not None:
        # Cold start, first step: what is popular in the visitor's ZIP segment.
        by_segment = snapshots.get(r, segment_popularity_key(tenant, segment))
        if len(by_segment) >= n:
            popular, local = by_segment, True
    return PopularityRecommender.rank_and_fill(
        products, active_ids, popular, profile, blocked, n, local
    )


def _reason(category: str, affinity: float, local: bool) -> tuple[str, str]:
    if affinity >= 0.2:
        return f"Popular in {category}, a category you have been browsing", "category_affinity"
    if local:
        return "Popular with shoppers in your area", "segment_popularity"
    return "Popular with shoppers right now", "trending"


class PopularityRecommender:
    """Ranking without a model (cold start); its pieces are used by ``campaigns.offers``."""

    @staticmethod
    def _rank(
        products: dict[str, dict],
        popular: list[tuple[str, float]],
        profile: VisitorProfile,
        blocked: frozenset[str] | set[str],
        n: int,
        local: bool = False,
    ) -> list[Offer]:
        if not popular or n <= 0:
            return []
        top = popular[0][1] or 1.0
        affinities = profile.affinities
        # The affinity boost reorders the head of the list, never its tail: the first
        # n + CANDIDATE_PAD offerable products are the candidates (as the Redis read once was).
        wanted = n + CANDIDATE_PAD
        # No later candidate can score above (its popularity share) x (the largest boost), and
        # popularity only falls down the list: once that bound is no better than the n-th best
        # score so far, the rest cannot enter the top n (a tie would rank after it anyway). For
        # a visitor without affinities that is right after the first n candidates.
        max_boost = 1.0 + AFFINITY_BOOST * max(affinities.values(), default=0.0)
        scored: list[tuple[float, float, dict]] = []
        best: list[float] = []  # the n best scores so far, ascending
        for pid, stored in popular:
            if len(best) == n and (stored / top) * max_boost <= best[0]:
                break
            product = products.get(pid)
            if product is None or pid in blocked or not product.get("active", True):
                continue
            affinity = affinities.get(product["category"], 0.0) if affinities else 0.0
            score = (stored / top) * (1.0 + AFFINITY_BOOST * affinity)
            scored.append((score, affinity, product))
            if len(best) < n:
                insort(best, score)
            elif score > best[0]:
                best[0] = score
                best.sort()
            if len(scored) == wanted:
                break
        # Stable: equal scores keep popularity order. Offers (and reasons) only for the winners.
        scored.sort(key=itemgetter(0), reverse=True)
        return [
            Offer(product, score, *_reason(product["category"], affinity, local))
            for score, affinity, product in scored[:n]
        ]

    @staticmethod
    def rank_and_fill(
        products: dict[str, dict],
        active_ids: tuple[str, ...],
        popular: list[tuple[str, float]],
        profile: VisitorProfile,
        blocked: frozenset[str] | set[str],
        n: int,
        local: bool = False,
    ) -> list[Offer]:
        """Popularity, nudged by affinities, then catalog products when too few are ranked."""
        offers = PopularityRecommender._rank(products, popular, profile, blocked, n, local)
        if len(offers) < n:
            offers += PopularityRecommender._fill(
                active_ids, products, offers, blocked, n - len(offers)
            )
        return offers

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
