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

from clickstream.decay import growth
from clickstream.ingest import segment_popularity_key
from clickstream.profiles import VisitorProfile
from models.ranking import Context, Ranked, arrange, offerable
from store.redis_client import reply_text

AFFINITY_BOOST = 1.0
CANDIDATE_PAD = 50
MAX_OFFERS = 50
# Enough candidates for the largest request: n <= MAX_OFFERS, 50 excluded ids, CANDIDATE_PAD.
SNAPSHOT_SIZE = MAX_OFFERS + 50 + CANDIDATE_PAD + 10
MAX_SNAPSHOTS = 10_000
# k of the segment popularity's shrinkage (``blend``): a segment with k weighted events (a
# view counts 1, a purchase more: clickstream.weights) is trusted half.
SHRINKAGE_EVENTS = 30.0


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
    *,
    segment: int | str | None = None,
    rules: dict | None = None,
    ctx: Context | None = None,
    now: float | None = None,
) -> list[Offer]:
    """Popularity in the visitor's ZIP segment blended with global popularity (see
    ``blend``), nudged by affinities, then catalog products; with ``rules`` (and ``ctx``) the
    model path's rules apply too (eligibility, pins, at most k per category), so the two
    paths compare fairly. ``segment``: the segment of the ZIP serving uses (``zip_block_for``);
    default the one the visitor typed."""
    if segment is None:
        segment = profile.attributes.get("zip_segment_id")
    local: frozenset[str] = frozenset()
    if segment not in (None, ""):
        by_segment = snapshots.get(r, segment_popularity_key(tenant, segment))
        seg_part, global_part, _ = _blend_parts(by_segment, popular, now, SHRINKAGE_EVENTS)
        popular = _ranked(seg_part, global_part)
        local = owed_to_segment(seg_part, global_part)
    if rules is None:
        return PopularityRecommender.rank_and_fill(
            products, active_ids, popular, profile, blocked, n, local
        )
    # More candidates than offers: the rules may drop some (eligibility, category cap).
    wanted = min(len(products), n * max(2, int(rules.get("max_per_category", 2))) + CANDIDATE_PAD)
    pool = PopularityRecommender.rank_and_fill(
        products, active_ids, popular, profile, blocked, wanted, local
    )
    ctx = ctx or Context(blocked=set(blocked))
    by_id = {o.product["product_id"]: o for o in pool}
    ordered = [
        Ranked(pid, o.score, o.score, o.reason, o.reason_code)
        for pid, o in by_id.items()
        if offerable(pid, products, rules, ctx)
    ]
    out = []
    for c in arrange(ordered, products, rules, n):
        offer = by_id[c.product_id]
        offer.reason, offer.reason_code = c.reason, c.reason_code
        out.append(offer)
    return out


def _blend_parts(
    by_segment: list[tuple[str, float]],
    overall: list[tuple[str, float]],
    now: float | None,
    k: float,
) -> tuple[dict[str, float], dict[str, float], float]:
    """Each product's part of the blend from its segment's list and from the global list, and
    the segment's weight (see ``blend``)."""
    g = growth(time.time() if now is None else now)
    seg_total = sum(score for _, score in by_segment)
    n_seg = seg_total / g
    weight = n_seg / (n_seg + k) if n_seg > 0 else 0.0
    all_total = sum(score for _, score in overall) or 1.0
    seg_part = {pid: weight * score / (seg_total or 1.0) for pid, score in by_segment}
    global_part = {pid: (1.0 - weight) * score / all_total for pid, score in overall}
    return seg_part, global_part, weight


def _ranked(seg_part: dict[str, float], global_part: dict[str, float]) -> list[tuple[str, float]]:
    mixed = dict(global_part)
    for pid, part in seg_part.items():
        mixed[pid] = mixed.get(pid, 0.0) + part
    return sorted(mixed.items(), key=lambda kv: kv[1], reverse=True)


def blend(
    by_segment: list[tuple[str, float]],
    overall: list[tuple[str, float]],
    now: float | None = None,
    k: float = SHRINKAGE_EVENTS,
) -> tuple[list[tuple[str, float]], float]:
    """Segment popularity shrunk towards global popularity: each product's share of its
    segment's weighted events, weighted n / (n + k) by the segment's (decayed, weighted) event
    count n, plus (1 - that) x its share of all events. A segment with a handful of events
    leans on the global list; one with many ranks by its own. Returns the blended list, best
    first, and the segment's weight."""
    seg_part, global_part, weight = _blend_parts(by_segment, overall, now, k)
    return _ranked(seg_part, global_part), weight


def owed_to_segment(seg_part: dict[str, float], global_part: dict[str, float]) -> frozenset[str]:
    """The products whose blended score owes more to the segment's list than to the global
    one: their reason speaks of the visitor's area. Judged per product, since a segment still
    leaning on the global list can lift its own favourite to the top."""
    return frozenset(pid for pid, part in seg_part.items() if part > global_part.get(pid, 0.0))


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
        local: frozenset[str] = frozenset(),
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
            Offer(
                product,
                score,
                *_reason(product["category"], affinity, product["product_id"] in local),
            )
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
        local: frozenset[str] = frozenset(),
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
