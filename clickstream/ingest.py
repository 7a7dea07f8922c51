"""Beacon ingest: one Lua script call per batch does dedupe, durable append and profile update.

A single script keeps the promise of the collect endpoint: when it returns, every accepted event is
in the tenant's stream and the profile reflects it, and a retried event (same visitor and client
event id) is recognised as a duplicate. Doing it in one server-side call means one network round
trip per batch and no window in which a crash could mark an event as seen without storing it.
All keys carry the tenant's hash tag, so the script stays valid on Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import redis

from clickstream import catalog
from clickstream.decay import growth
from clickstream.profiles import (
    PROFILE_TTL_S,
    RECENT_ITEMS,
    ZIP_PREFIX,
    customer_visitors_key,
    visitor_keys,
)
from store import keys
from store.ratelimit import Refused, rate_key
from store.tenants import Tenant

DEDUPE_TTL_S = 48 * 3600
# Stream length beyond which collection pushes back (503) instead of exhausting Redis memory
# when the archiver is down; the archiver trims the stream as it writes Parquet.
MAX_STREAM_LEN = 5_000_000
WEIGHTS = {"product_view": 1, "add_to_cart": 3, "purchase": 5, "offer_click": 2}

_LUA = """
local cnt = redis.call('INCR', KEYS[1])
if cnt == 1 then redis.call('EXPIRE', KEYS[1], 2) end
if tonumber(ARGV[1]) > 0 and cnt > tonumber(ARGV[1]) then return -1 end
local store_events = ARGV[8] == '1'
if store_events and redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[9]) then return -2 end
local growth = tonumber(ARGV[3])
local profile = ARGV[4] == '1'
local weights = {product_view=1, add_to_cart=3, purchase=5, offer_click=2}
local out = {}
-- Segment-level popularity (cold start for visitors who gave a ZIP): the key is derived from
-- KEYS[4] and shares its hash tag, so the script stays within one cluster slot.
local seg = false
if profile then seg = redis.call('HGET', KEYS[6], 'zip_segment_id') end
for i = 1, #KEYS - 10 do
  local b = 9 + (i - 1) * 4
  local payload, etype, pid, cat = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  if redis.call('SET', KEYS[10 + i], '1', 'NX', 'EX', ARGV[6]) then
    out[i] = 1
    if store_events then redis.call('XADD', KEYS[2], '*', 'e', payload) end
    redis.call('HINCRBY', KEYS[3], etype, 1)
    if pid ~= '' then
      local w = weights[etype]
      if w then
        redis.call('ZINCRBY', KEYS[4], w * growth, pid)
        if seg then redis.call('ZINCRBY', KEYS[4] .. ':seg:' .. seg, w * growth, pid) end
      end
      if profile then
        if cat == '' then cat = redis.call('HGET', KEYS[5], pid) or '' end
        if etype == 'product_view' then
          redis.call('LREM', KEYS[7], 0, pid)
          redis.call('LPUSH', KEYS[7], pid)
          redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[7]) - 1)
        elseif etype == 'add_to_cart' then
          redis.call('SADD', KEYS[8], pid)
        elseif etype == 'remove_from_cart' then
          redis.call('SREM', KEYS[8], pid)
        elseif etype == 'purchase' then
          redis.call('SREM', KEYS[8], pid)
          redis.call('ZADD', KEYS[9], ARGV[2], pid)
        end
        if w and cat ~= '' then redis.call('ZINCRBY', KEYS[10], w * growth, cat) end
      end
    end
    if profile then redis.call('HINCRBY', KEYS[6], 'n_' .. etype, 1) end
  else
    out[i] = 0
  end
end
if profile then
  redis.call('HSET', KEYS[6], 'last_seen', ARGV[2])
  redis.call('HSETNX', KEYS[6], 'first_seen', ARGV[2])
  for k = 6, 10 do redis.call('EXPIRE', KEYS[k], ARGV[5]) end
end
redis.call('EXPIRE', KEYS[3], 400 * 86400)
return out
"""


@dataclass
class IngestResult:
    accepted: list[dict] = field(default_factory=list)
    duplicates: int = 0


def stats_key(tenant: str, day: str) -> str:
    return keys.tenant_key(tenant, "stats", day)


def popularity_key(tenant: str) -> str:
    return keys.tenant_key(tenant, "pop")


def segment_popularity_key(tenant: str, segment: int | str) -> str:
    """Popularity among visitors of one ZIP segment (kept by the ingest script)."""
    return f"{popularity_key(tenant)}:seg:{segment}"


def dedupe_key(tenant: str, visitor: str, event_id: str) -> str:
    return keys.tenant_key(tenant, "dd", visitor, event_id)


class Ingestor:
    """Stores validated batches for any tenant; one per process (holds the script handle)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._script = r.register_script(_LUA)

    def ingest(
        self,
        tenant: Tenant,
        visitor: str,
        events: list[dict],
        *,
        track: bool = True,
        on_zip: Callable[[str, str], dict] | None = None,
        now: float | None = None,
    ) -> IngestResult:
        """Store validated events. ``track=False`` (DNT/GPC): aggregate counters only.

        ``on_zip(zip, country)`` turns a volunteered ZIP into the profile block (geo,
        demographics, segment); it is injected by the caller because enrichment is a sibling
        package of this one.
        """
        now = time.time() if now is None else now
        now_ms = int(now * 1000)
        name = tenant.name
        vk = visitor_keys(name, visitor)
        script_keys = [
            rate_key(name, now),
            keys.event_stream(name),
            stats_key(name, time.strftime("%Y-%m-%d", time.gmtime(now))),
            popularity_key(name),
            catalog.category_key(name),
            vk["profile"], vk["recent"], vk["cart"], vk["bought"], vk["aff"],
        ]  # fmt: skip
        args: list[object] = [
            tenant.rate_limit, int(now), repr(growth(now)), int(track), PROFILE_TTL_S,
            DEDUPE_TTL_S, RECENT_ITEMS, int(track), MAX_STREAM_LEN,
        ]  # fmt: skip
        records = []
        for event in events:
            record = dict(event)
            if "customer_id" in record:
                # The raw CRM id never reaches storage: only the tenant-keyed hash does.
                record["customer"] = tenant.hash_customer_id(record.pop("customer_id"))
            record["server_ts"] = now_ms
            record["visitor"] = visitor
            records.append(record)
            script_keys.append(dedupe_key(name, visitor, event["id"]))
            args += [
                orjson.dumps(record),
                event["type"],
                event.get("product_id", ""),
                event.get("category", ""),
            ]
        reply = self._script(keys=script_keys, args=args)
        if reply == -1:
            raise Refused("rate limit exceeded", retry_after=1)
        if reply == -2:
            raise Refused("event backlog full: the archiver is behind", retry_after=30, status=503)
        result = IngestResult()
        for record, flag in zip(records, reply, strict=True):
            if flag:
                result.accepted.append(record)
            else:
                result.duplicates += 1
        if track:
            self._link_identity_and_zip(name, visitor, result.accepted, on_zip)
        return result

    def _link_identity_and_zip(
        self,
        tenant: str,
        visitor: str,
        accepted: list[dict],
        on_zip: Callable[[str, str], dict] | None,
    ) -> None:
        """Rare events that change who the visitor is or where they live: one extra round trip."""
        updates: dict[str, object] = {}
        customers: list[str] = []
        for record in accepted:
            if record["type"] == "identify":
                updates["customer"] = record["customer"]
                customers.append(record["customer"])
            elif record["type"] == "zip":
                country = record.get("country", "US")
                block = on_zip(record["zip"], country) if on_zip else {}
                updates.update({"zip": record["zip"], "country": country})
                updates.update({f"{ZIP_PREFIX}{k}": v for k, v in block.items() if v is not None})
        if not updates:
            return
        profile_key = visitor_keys(tenant, visitor)["profile"]
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(
            profile_key,
            mapping={
                k: v if isinstance(v, str | bytes | int | float) else orjson.dumps(v)
                for k, v in updates.items()
            },
        )
        pipe.expire(profile_key, PROFILE_TTL_S)
        for customer in customers:
            pipe.sadd(customer_visitors_key(tenant, customer), visitor)
            pipe.expire(customer_visitors_key(tenant, customer), PROFILE_TTL_S)
        pipe.execute()
