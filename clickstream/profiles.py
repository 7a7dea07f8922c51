"""The live visitor profile: what the service knows of one visitor, kept in Redis.

Keys (all under the tenant's hash tag, all expiring after ``PROFILE_TTL_S`` of inactivity):
``v:<id>:profile`` hash (counters ``n_<type>``, first/last seen, zip block, customer hash),
``v:<id>:recent`` list of recently viewed products (newest first),
``v:<id>:cart`` set, ``v:<id>:bought`` sorted set product -> purchase time (s),
``v:<id>:aff`` sorted set category -> decayed affinity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

import redis

from store import keys
from store.redis_client import reply_text

PROFILE_TTL_S = 90 * 24 * 3600
RECENT_ITEMS = 20
AFFINITY_TOP = 10  # categories read back per profile
# Housekeeping field of the ingest script (when the profile's expiries were last pushed back).
EXPIRY_REFRESHED_FIELD = "ttl_at"
RECENTLY_BOUGHT_S = 30 * 24 * 3600
PROFILE_PARTS = keys.VISITOR_PARTS
ZIP_PREFIX = "zip_"


# Named in store.keys; kept here under the names callers import.
visitor_keys = keys.visitor_keys
customer_visitors_key = keys.customer_visitors


@dataclass
class VisitorProfile:
    visitor: str
    counters: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)
    cart: set[str] = field(default_factory=set)
    recently_bought: set[str] = field(default_factory=set)
    affinities: dict[str, float] = field(default_factory=dict)  # category -> share in [0, 1]

    @property
    def known(self) -> bool:
        return bool(self.counters or self.attributes)

    @property
    def customer(self) -> str | None:
        return self.attributes.get("customer")

    def zip_block(self) -> dict[str, str] | None:
        """The ZIP enrichment block as ``zip_profile`` returned it (values as stored, text).

        Ingest stores the block on the profile hash with a ``zip_`` prefix; numbers come back
        as text and must be parsed by the reader (the feature builder does).
        """
        block = {
            k[len(ZIP_PREFIX) :]: v for k, v in self.attributes.items() if k.startswith(ZIP_PREFIX)
        }
        return block or None


def queue_profile_reads(pipe: redis.client.Pipeline, tenant: str, visitor: str) -> None:
    """Add the reads of one profile to a pipeline (5 replies, parsed by ``parse_profile``)."""
    k = visitor_keys(tenant, visitor)
    pipe.hgetall(k["profile"])
    pipe.lrange(k["recent"], 0, RECENT_ITEMS - 1)
    pipe.smembers(k["cart"])
    pipe.zrangebyscore(k["bought"], time.time() - RECENTLY_BOUGHT_S, "+inf")
    pipe.zrevrange(k["aff"], 0, AFFINITY_TOP - 1, withscores=True)


def parse_profile(visitor: str, replies: list) -> VisitorProfile:
    raw_hash, recent, cart, bought, aff = replies
    counters: dict[str, int] = {}
    attributes: dict[str, str] = {}
    for k, v in raw_hash.items():
        name, value = reply_text(k), reply_text(v)
        if name.startswith("n_"):
            counters[name[2:]] = int(value)
        elif name != EXPIRY_REFRESHED_FIELD:
            attributes[name] = value
    # Shares of the decayed total: every stored score carries the same growth factor, so it
    # cancels and the stored scores give the shares directly (one division each, no pow).
    total = sum(s for _, s in aff) or 1.0
    return VisitorProfile(
        visitor=visitor,
        counters=counters,
        attributes=attributes,
        recent=[reply_text(p) for p in recent],
        cart={reply_text(p) for p in cart},
        recently_bought={reply_text(p) for p in bought},
        affinities={reply_text(c): s / total for c, s in aff},
    )


def read_profile(r: redis.Redis, tenant: str, visitor: str) -> VisitorProfile:
    pipe = r.pipeline(transaction=False)
    queue_profile_reads(pipe, tenant, visitor)
    return parse_profile(visitor, pipe.execute())


def erase_visitor(r: redis.Redis, tenant: str, visitor: str) -> int:
    """Remove every live key of one visitor; returns how many existed."""
    return int(r.delete(*visitor_keys(tenant, visitor).values()))


MAX_LINKED_VISITORS = 10


def merge_profiles(primary: VisitorProfile, others: list[VisitorProfile]) -> VisitorProfile:
    """One person's behaviour across devices: the current visitor first, then the linked ones."""
    if not others:
        return primary
    merged = VisitorProfile(
        visitor=primary.visitor,
        counters=dict(primary.counters),
        attributes=dict(primary.attributes),
        recent=list(primary.recent),
        cart=set(primary.cart),
        recently_bought=set(primary.recently_bought),
    )
    affinity: dict[str, float] = dict(primary.affinities)
    for other in others:
        for name, n in other.counters.items():
            merged.counters[name] = merged.counters.get(name, 0) + n
        merged.recent += [p for p in other.recent if p not in merged.recent]
        merged.cart |= other.cart
        merged.recently_bought |= other.recently_bought
        for category, share in other.affinities.items():
            affinity[category] = affinity.get(category, 0.0) + share
    merged.recent = merged.recent[:RECENT_ITEMS]
    total = sum(affinity.values()) or 1.0
    merged.affinities = {c: s / total for c, s in affinity.items()}
    return merged


def with_identity(
    r: redis.Redis, tenant: str, profile: VisitorProfile, linked: list | None = None
) -> VisitorProfile:
    """An identified visitor's profile merged with the other visitors linked to the customer.

    Costs one more round trip, and only for identified visitors (two when ``linked``, the
    customer's visitors, was not read by the caller already); the links are written by
    ``identify`` events, so behaviour carries over between devices without copying it.
    """
    if not profile.customer:
        return profile
    if linked is None:
        # With a count, SRANDMEMBER replies with a list (redis-py types every form of it).
        linked = cast(
            "list[bytes | str]",
            r.srandmember(customer_visitors_key(tenant, profile.customer), MAX_LINKED_VISITORS + 1),
        )
    others = [reply_text(v) for v in linked or [] if reply_text(v) != profile.visitor][
        :MAX_LINKED_VISITORS
    ]
    if not others:
        return profile
    pipe = r.pipeline(transaction=False)
    for visitor in others:
        queue_profile_reads(pipe, tenant, visitor)
    replies = pipe.execute()
    parsed = [parse_profile(v, replies[i * 5 : i * 5 + 5]) for i, v in enumerate(others)]
    return merge_profiles(profile, parsed)
