"""Beacon ingest: one Lua script call per batch does dedupe, durable append and profile update.

A single script keeps the promise of the collect endpoint: when it returns, every accepted event is
in the tenant's stream and the profile reflects it, and a retried event (same visitor and client
event id) is recognised as a duplicate. Doing it in one server-side call means one network round
trip per batch and no window in which a crash could mark an event as seen without storing it.
All keys carry the tenant's hash tag, so the script stays valid on Redis Cluster.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from math import isfinite
from string import Template
from typing import Literal

import orjson
import redis
from redis.typing import EncodableT

from clickstream import catalog, weights
from clickstream.decay import growth
from clickstream.profiles import (
    PROFILE_TTL_S,
    RECENT_ITEMS,
    ZIP_PREFIX,
    customer_visitors_key,
    visitor_keys,
)
from store import keys
from store.hot_script import HotScript
from store.ratelimit import Refused, rate_key
from store.tenants import Tenant

# Event ids are remembered per visitor in one hash per UTC day (server clock), checked over
# today and the two days before: a retry is recognised for at least 48 h. A small hash is stored
# compactly (listpack), so a visitor-day costs a fraction of the memory and AOF bytes of a key
# per event, and erasure deletes known keys instead of scanning the keyspace.
DEDUPE_DAYS = 3
DAY_S = 86400
# Stream length beyond which collection pushes back (503) instead of exhausting Redis memory
# when the archiver is down; the archiver trims the stream as it writes Parquet.
MAX_STREAM_LEN = 5_000_000
# How often an active visitor's profile keys get their expiry pushed back (see the script).
TTL_REFRESH_S = 3600
# The per-minute traffic of a day (the dashboard shows the last hour) is kept two days.
TRAFFIC_TTL_S = 2 * DAY_S
WEIGHTS = weights.WEIGHTS  # the table at import, for callers that name it here

# Per-batch aggregation: one HMGET per dedupe day and one HSET for the new ids, one ZINCRBY
# per distinct product or category, one HINCRBY per event type, one HMGET for missing
# categories, one LPUSH for all views. Every write here is also appended to the AOF, so each
# command saved is saved twice. A key gets its TTL when a write creates it (the reply says so)
# and all profile keys are refreshed once per ARGV[10] seconds of activity, instead of five
# EXPIREs per batch. $weights and $segment_infix are rendered by ``ingest_script``.
_LUA = Template("""
local cnt = redis.call('INCR', KEYS[1])
if cnt == 1 then redis.call('EXPIRE', KEYS[1], 2) end
if tonumber(ARGV[1]) > 0 and cnt > tonumber(ARGV[1]) then return -1 end
local store_events = ARGV[8] == '1'
if store_events and redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[9]) then return -2 end
local now, growth, ttl = ARGV[2], tonumber(ARGV[3]), ARGV[5]
local profile = ARGV[4] == '1'
local weights = $weights
local out, types, pop, aff, uncat, views = {}, {}, {}, {}, {}, {}
local impressions = 0  -- verified offer impressions (an unverified one arrives without product)
local touched = {}
-- Segment-level popularity (cold start for visitors who gave a ZIP): the key is derived from
-- KEYS[4] as store.keys.segment_popularity names it, so it shares KEYS[4]'s hash tag and the
-- script stays within one cluster slot.
local seg, fresh, identified = false, false, false
if profile then
  local h = redis.call('HMGET', KEYS[6], 'zip_segment_id', 'ttl_at', 'customer')
  seg = h[1]
  -- A ZIP sent in this batch counts for the batch's own events (ARGV[14]: its segment).
  if ARGV[14] ~= '' then seg = ARGV[14] end
  fresh = h[2] and tonumber(now) - tonumber(h[2]) < tonumber(ARGV[10])
  identified = h[3]
end
-- KEYS[16..]: the visitor's dedupe hashes (event id -> 1), today's first (see DEDUPE_DAYS).
local n = (#ARGV - 14) / 5
local ids = {}
for i = 1, n do ids[i] = ARGV[14 + (i - 1) * 5 + 1] end
local known, new_ids = {}, {}
for k = 16, #KEYS do
  local m = redis.call('HMGET', KEYS[k], unpack(ids))
  for i = 1, n do if m[i] then known[ids[i]] = true end end
end
for i = 1, n do
  local b = 14 + (i - 1) * 5
  local id, payload, etype, pid, cat = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  if not known[id] then
    known[id] = true  -- a second copy within the batch is a duplicate too
    new_ids[#new_ids + 1] = id
    new_ids[#new_ids + 1] = '1'
    out[i] = 1
    if store_events then redis.call('XADD', KEYS[2], '*', 'e', payload) end
    types[etype] = (types[etype] or 0) + 1
    if pid ~= '' then
      if etype == 'offer_impression' then impressions = impressions + 1 end
      local w = weights[etype]
      if w then pop[pid] = (pop[pid] or 0) + w end
      if profile then
        if w then
          if cat == '' then uncat[#uncat + 1] = {pid, w} else aff[cat] = (aff[cat] or 0) + w end
        end
        if etype == 'product_view' then
          views[#views + 1] = pid
        elseif etype == 'add_to_cart' then
          if redis.call('SADD', KEYS[8], pid) == 1 then touched[8] = true end
        elseif etype == 'remove_from_cart' then
          redis.call('SREM', KEYS[8], pid)
        elseif etype == 'purchase' then
          redis.call('SREM', KEYS[8], pid)
          if redis.call('ZADD', KEYS[9], now, pid) == 1 then touched[9] = true end
        end
      end
    end
  else
    out[i] = 0
  end
end
if #new_ids > 0 and redis.call('HSET', KEYS[16], unpack(new_ids)) == redis.call('HLEN', KEYS[16]) then
  redis.call('EXPIREAT', KEYS[16], ARGV[6])  -- a new hash: it lives until its last check
end
for pid, w in pairs(pop) do
  redis.call('ZINCRBY', KEYS[4], w * growth, pid)
  if seg then redis.call('ZINCRBY', KEYS[4] .. $segment_infix .. seg, w * growth, pid) end
end
local new_stats = false
for etype, c in pairs(types) do
  if redis.call('HINCRBY', KEYS[3], etype, c) == c then new_stats = true end
end
if new_stats then redis.call('EXPIRE', KEYS[3], 400 * 86400) end
-- The dashboard's overview (KEYS[11..14]): events and impressions per minute, visitors and
-- identified visitors of the day, events per ZIP segment. Each key's TTL is set when a write
-- creates its field or changes its estimate, not on every batch.
local total = #new_ids / 2
if total > 0 then
  local minute = ARGV[11]
  if redis.call('HINCRBY', KEYS[11], minute, total) == total then
    redis.call('EXPIRE', KEYS[11], ARGV[12])
  end
  if impressions > 0 then redis.call('HINCRBY', KEYS[11], minute .. ':imp', impressions) end
  if profile then
    if redis.call('PFADD', KEYS[12], ARGV[13]) == 1 then redis.call('EXPIRE', KEYS[12], 8 * 86400) end
    if (identified or types['identify']) and redis.call('PFADD', KEYS[13], ARGV[13]) == 1 then
      redis.call('EXPIRE', KEYS[13], 8 * 86400)
    end
    if seg and tonumber(redis.call('ZINCRBY', KEYS[14], total, seg)) == total then
      redis.call('EXPIRE', KEYS[14], 8 * 86400)
    end
  end
end
if profile then
  if #uncat > 0 then
    local ids = {}
    for j, pw in ipairs(uncat) do ids[j] = pw[1] end
    local found = redis.call('HMGET', KEYS[5], unpack(ids))
    for j, pw in ipairs(uncat) do
      if found[j] then aff[found[j]] = (aff[found[j]] or 0) + pw[2] end
    end
  end
  for c, w in pairs(aff) do
    if tonumber(redis.call('ZINCRBY', KEYS[10], w * growth, c)) == w * growth then
      touched[10] = true
    end
  end
  if #views > 0 then
    -- Latest view first, each product once, as LREM + LPUSH per view would leave it.
    local seen, order = {}, {}
    for j = #views, 1, -1 do
      local pid = views[j]
      if not seen[pid] then seen[pid] = true; order[#order + 1] = pid end
    end
    for _, pid in ipairs(order) do redis.call('LREM', KEYS[7], 0, pid) end
    local push = {}
    for j = #order, 1, -1 do push[#push + 1] = order[j] end
    if redis.call('LPUSH', KEYS[7], unpack(push)) == #push then touched[7] = true end
    redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[7]) - 1)
  end
  for etype, c in pairs(types) do redis.call('HINCRBY', KEYS[6], 'n_' .. etype, c) end
  if fresh then
    redis.call('HSET', KEYS[6], 'last_seen', now)
    for k, _ in pairs(touched) do redis.call('EXPIRE', KEYS[k], ttl) end
  else
    redis.call('HSETNX', KEYS[6], 'first_seen', now)
    redis.call('HSET', KEYS[6], 'last_seen', now, 'ttl_at', now)
    for k = 6, 10 do redis.call('EXPIRE', KEYS[k], ttl) end
  end
end
-- KEYS[15]: the tenant's campaigns version, last after the flags, so the campaign half of
-- collect knows whether its campaigns are current without a round trip of its own.
out[#out + 1] = tonumber(redis.call('GET', KEYS[15]) or '0')
return out
""")
_LUA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ingest_script(table: Mapping[str, float]) -> str:
    """The ingest script's source with ``table`` (event type -> weight) as its weights.

    Rendered once per Ingestor, so no batch pays for it; ``clickstream.weights`` says why there
    is one table. The segment popularity key's infix comes from store.keys likewise.
    """
    for etype, weight in table.items():
        if not (_LUA_NAME.match(etype) and isinstance(weight, int | float) and isfinite(weight)):
            raise ValueError(f"event weight {etype!r}: {weight!r} cannot be written as Lua")
    infix = keys.SEGMENT_POPULARITY_INFIX
    if not re.fullmatch(r"[A-Za-z0-9:_.-]*", infix):
        raise ValueError(f"segment popularity infix {infix!r} cannot be quoted as Lua")
    return _LUA.substitute(
        weights="{" + ", ".join(f"{etype}={weight!r}" for etype, weight in table.items()) + "}",
        segment_infix=f"'{infix}'",
    )


# What a volunteered ZIP's lookup status says to the visitor who typed it (collect's answer).
ZIP_ANSWER_STATUS = {"ok": "ok", "invalid": "invalid", "not_found": "unknown"}


def zip_answer(block: Mapping[str, object], zip_code: str) -> dict[str, str]:
    """``{status, reason}`` of a ZIP's profile block, for the visitor: ok, invalid (not the
    form of a postal code), unknown (well formed, but no such ZIP in the data) or unavailable
    (no data to look it up in: offers stay general)."""
    raw = str(block.get("status") or "unavailable")
    status = ZIP_ANSWER_STATUS.get(raw, "unavailable")
    if status == "ok":
        place = ", ".join(str(block[k]) for k in ("place", "state_code") if block.get(k))
        return {"status": status, "reason": f"Offers for {place or zip_code}"}
    if status == "unknown":
        reason = f"{zip_code} is not a ZIP code we know; offers stay general"
    elif status == "invalid":
        reason = f"{block.get('reason') or 'not a postal code'}; offers stay general"
    else:
        reason = "ZIP codes cannot be looked up right now; offers stay general"
    return {"status": status, "reason": reason[:1].upper() + reason[1:]}


@dataclass
class IngestResult:
    accepted: list[dict] = field(default_factory=list)
    duplicates: int = 0
    # The last accepted ZIP event's answer (see ``zip_answer``), when the batch had one.
    zip: dict[str, str] | None = None
    # The tenant's campaigns version as the batch was stored (``store.keys.campaigns_version``).
    campaigns_version: int | None = None


# Named in store.keys; kept here under the names callers import.
stats_key = keys.event_type_counts
popularity_key = keys.popularity
segment_popularity_key = keys.segment_popularity
dedupe_key = keys.dedupe_ids


def dedupe_keys(tenant: str, visitor: str, now: float) -> list[str]:
    """The dedupe hashes a batch at ``now`` is checked against, today's first."""
    today = int(now // DAY_S)
    return [dedupe_key(tenant, visitor, today - back) for back in range(DEDUPE_DAYS)]


class Ingestor:
    """Stores validated batches for any tenant; one per process (holds the script handle)."""

    def __init__(self, r: redis.Redis, wait_replicas: int = 0, wait_timeout_ms: int = 500) -> None:
        self.r = r
        # The table as it is now (not at import), so a test can change it and see this follow.
        # With ``wait_replicas`` a batch is stored once that many replicas confirm it (WAIT).
        self._script = HotScript(r, ingest_script(weights.WEIGHTS), wait_replicas, wait_timeout_ms)

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
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        script_keys = [
            rate_key(name, now),
            keys.event_stream(name),
            stats_key(name, day),
            popularity_key(name),
            catalog.category_key(name),
            vk["profile"], vk["recent"], vk["cart"], vk["bought"], vk["aff"],
            keys.traffic_minutes(name, day), keys.daily_visitors(name, day),
            keys.daily_identified(name, day), keys.segment_events(name, day),
            keys.campaigns_version(name), *dedupe_keys(name, visitor, now),
        ]  # fmt: skip
        # Today's hash is last checked at the end of the day DEDUPE_DAYS - 1 days from now.
        forget_at = (int(now // DAY_S) + DEDUPE_DAYS) * DAY_S
        # A ZIP in the batch is enriched first, so its segment counts for the batch's events.
        zips = [e for e in events if e["type"] == "zip"] if track and on_zip else []
        zip_block = (
            on_zip(zips[-1]["zip"], zips[-1].get("country", "US")) if on_zip and zips else None
        )
        batch_segment = (zip_block or {}).get("segment_id")
        args: list[EncodableT] = [
            tenant.rate_limit, int(now), repr(growth(now)), int(track), PROFILE_TTL_S,
            forget_at, RECENT_ITEMS, int(track), MAX_STREAM_LEN, TTL_REFRESH_S,
            int(now) % DAY_S // 60, TRAFFIC_TTL_S, visitor,
            "" if batch_segment is None else str(batch_segment),
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
            # An event flagged ``unverified`` (an offer response whose token the caller could
            # not trust) is stored as it came, but no product or category of it counts.
            counted = "unverified" not in event
            args += [
                event["id"],
                orjson.dumps(record),
                event["type"],
                event.get("product_id", "") if counted else "",
                event.get("category", "") if counted else "",
            ]
        # -1 or -2 when the batch is refused, else one flag per event (1: new, 0: a duplicate)
        # and the campaigns version.
        reply: list[int] | Literal[-1, -2] = self._script(script_keys, args)
        if reply == -1:
            raise Refused("rate limit exceeded", retry_after=1)
        if reply == -2:
            raise Refused("event backlog full: the archiver is behind", retry_after=30, status=503)
        result = IngestResult(campaigns_version=int(reply[-1]))
        for record, flag in zip(records, reply[:-1], strict=True):
            if flag:
                result.accepted.append(record)
            else:
                result.duplicates += 1
        if track:
            known = {(zips[-1]["zip"], zips[-1].get("country", "US")): zip_block} if zips else {}

            def enrich(zip_code: str, country: str) -> dict:
                found = known.get((zip_code, country))
                return found if found is not None else (on_zip(zip_code, country) if on_zip else {})

            result.zip = self._link_identity_and_zip(
                name, visitor, result.accepted, enrich if on_zip or known else None
            )
        elif on_zip is not None:
            # No profile is kept, but the visitor who typed a ZIP still hears whether it is one.
            last = next((e for e in reversed(events) if e["type"] == "zip"), None)
            if last is not None:
                block = on_zip(last["zip"], last.get("country", "US"))
                result.zip = zip_answer(block, last["zip"])
        return result

    def _link_identity_and_zip(
        self,
        tenant: str,
        visitor: str,
        accepted: list[dict],
        on_zip: Callable[[str, str], dict] | None,
    ) -> dict[str, str] | None:
        """Rare events that change who the visitor is or where they live: one extra round trip.
        Returns the last ZIP's answer (``zip_answer``), if there was one."""
        updates: dict[str, object] = {}
        customers: list[str] = []
        answer = None
        for record in accepted:
            if record["type"] == "identify":
                updates["customer"] = record["customer"]
                customers.append(record["customer"])
            elif record["type"] == "zip":
                country = record.get("country", "US")
                block = on_zip(record["zip"], country) if on_zip else {}
                if on_zip is not None:
                    answer = zip_answer(block, record["zip"])
                updates.update({"zip": record["zip"], "country": country})
                updates.update({f"{ZIP_PREFIX}{k}": v for k, v in block.items() if v is not None})
        if not updates:
            return answer
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
        return answer
