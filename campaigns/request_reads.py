"""Everything one offer request reads, in one script call.

A pipeline of nine commands cost the worker more in redis-py (packing each command, parsing
each reply, running its response callback) than the ranking did; one script call with flat
replies costs one command. It counts the request against the tenant's rate limit, reads the
catalog/champion/rules versions, the top of the popularity set when the worker's snapshot is
stale, and the visitor's live profile when tracking is allowed.

When the profile names a CRM customer, the same call reads what serving an identified visitor
needs besides: the customer's other devices, the live CRM version and the customer's profile in
it, and the customer's campaign record. Those were four more round trips (with_identity,
get_customer, read_person), which made an identified visitor's request cost about twice an
anonymous one's in the worker (redis-py per command) and in waits on a busy machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis

from campaigns.rules import rules_version_key
from clickstream.catalog import version_key
from clickstream.ingest import popularity_key
from clickstream.profiles import (
    AFFINITY_TOP,
    MAX_LINKED_VISITORS,
    RECENT_ITEMS,
    RECENTLY_BOUGHT_S,
    VisitorProfile,
    parse_profile,
    visitor_keys,
)
from enrichment.crm.serving import BUCKET_CHARS
from models.popularity import SNAPSHOT_SIZE
from models.registry import champion_key
from store import keys
from store.hot_script import HotScript
from store.ratelimit import WINDOW_S, rate_key
from store.redis_client import reply_text

_LUA = """
local cnt = redis.call('INCR', KEYS[1])
if cnt == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
local out = {cnt, redis.call('MGET', KEYS[2], KEYS[3], KEYS[4], KEYS[11]), false}
if ARGV[2] == '1' then
  out[3] = redis.call('ZREVRANGE', KEYS[5], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
end
if ARGV[4] == '1' then
  out[4] = redis.call('HGETALL', KEYS[6])
  out[5] = redis.call('LRANGE', KEYS[7], 0, tonumber(ARGV[6]) - 1)
  out[6] = redis.call('SMEMBERS', KEYS[8])
  out[7] = redis.call('ZRANGEBYSCORE', KEYS[9], ARGV[5], '+inf')
  out[8] = redis.call('ZREVRANGE', KEYS[10], 0, tonumber(ARGV[7]) - 1, 'WITHSCORES')
  out[9] = redis.call('HGETALL', KEYS[12])
  local h, customer = out[4], nil
  for i = 1, #h, 2 do
    if h[i] == ARGV[8] then customer = h[i + 1] end
  end
  -- Only a well-formed customer hash names keys (enrichment.crm.serving.HASH_RE).
  if customer and #customer == 32 and not string.find(customer, '[^0-9a-f]') then
    out[10] = redis.call('SRANDMEMBER', ARGV[9] .. customer, tonumber(ARGV[10]))
    local sid = redis.call('GET', KEYS[13])
    out[11] = sid
    out[12] = false
    if sid then
      local bucket = string.sub(customer, 1, tonumber(ARGV[14]))
      out[12] = redis.call('HGET', ARGV[11] .. sid .. ARGV[12] .. bucket, customer)
    end
    out[13] = redis.call('HGETALL', ARGV[13] .. customer)
  end
end
return out
"""


@dataclass
class IdentityReads:
    """An identified visitor's reads, made in the request's script: what
    ``clickstream.profiles.with_identity``, ``enrichment.crm.customer_from_reads`` and
    ``campaigns.assignment.parse_person`` take instead of reading them again."""

    customer: str  # the customer hash on the profile
    linked: list  # SRANDMEMBER of the customer's visitors
    serving_id: str | None  # the live CRM version's serving id
    blob: bytes | None  # the customer's profile in it
    person: list  # the customer's campaign record, flat as HGETALL in a script


@dataclass
class RequestState:
    count: int
    catalog_version: int
    champion: str | None
    rules_version: int
    popular: list[tuple[bytes, float]] | None  # [(member, score), ...] when read, else None
    profile: VisitorProfile
    campaigns_version: int = 0
    person: list | None = None  # the visitor's campaign record, flat as HGETALL in a script
    identity: IdentityReads | None = None  # when the profile names a customer


def _pairs(flat: list) -> list[tuple[bytes, float]]:
    return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]


class RequestReads:
    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._script: HotScript | None = None

    def read(
        self,
        r: redis.Redis,
        tenant: str,
        visitor: str,
        *,
        read_popular: bool,
        track: bool,
        now: float | None = None,
    ) -> RequestState:
        now = time.time() if now is None else now
        if self._script is None or self._client is not r:
            self._client, self._script = r, HotScript(r, _LUA)
        vk = visitor_keys(tenant, visitor)
        # [count, [catalog, champion, rules versions], popular or False, then the profile's
        # hash, recent, cart, bought and affinity replies when tracking]: see _LUA.
        reply: list[Any] = self._script(
            [
                rate_key(tenant, now), version_key(tenant), champion_key(tenant),
                rules_version_key(tenant), popularity_key(tenant),
                vk["profile"], vk["recent"], vk["cart"], vk["bought"], vk["aff"],
                keys.campaigns_version(tenant), keys.person_campaigns(tenant, f"v:{visitor}"),
                keys.crm_serving_id(tenant),
            ],
            [
                WINDOW_S + 1, int(read_popular), SNAPSHOT_SIZE, int(track),
                now - RECENTLY_BOUGHT_S, RECENT_ITEMS, AFFINITY_TOP,
                "customer", *_identity_args(tenant),
            ],
        )  # fmt: skip
        catalog_version, champion, rules_version, campaigns_version = reply[1]
        if track:
            raw_hash = reply[3]
            profile = parse_profile(
                visitor,
                [
                    dict(zip(raw_hash[::2], raw_hash[1::2], strict=True)),
                    reply[4], reply[5], reply[6], _pairs(reply[7]),
                ],
            )  # fmt: skip
        else:
            profile = VisitorProfile(visitor)
        identity = None
        if len(reply) > 9:
            identity = IdentityReads(
                customer=profile.customer or "",
                linked=reply[9] or [],
                serving_id=reply_text(reply[10]),
                blob=reply[11] or None,
                person=reply[12] or [],
            )
        return RequestState(
            count=int(reply[0]),
            catalog_version=int(catalog_version or 0),
            champion=reply_text(champion),
            rules_version=int(rules_version or 0),
            popular=_pairs(reply[2]) if read_popular else None,
            profile=profile,
            campaigns_version=int(campaigns_version or 0),
            person=reply[8] if track else None,
            identity=identity,
        )


@lru_cache(maxsize=1024)
def _identity_args(tenant: str) -> tuple:
    parts = keys.identity_parts(tenant)
    return (
        parts["customer_visitors"][0], MAX_LINKED_VISITORS + 1, *parts["crm_profiles"],
        parts["person"][0], BUCKET_CHARS,
    )  # fmt: skip
