"""Erasure of one person everywhere: live profiles, CRM versions, event stream and archive.

It sits in ``models/`` because it is the lowest package that can see all the places a person
lives (``clickstream`` and ``enrichment`` are siblings) and because it must know which model
versions were trained while the person was in the data, so that staff can retrain them.
The receipt keeps only hashed identifiers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

import orjson
import redis

from clickstream.archiver import erase_events
from clickstream.ingest import DAY_S, DEDUPE_DAYS, dedupe_key
from clickstream.profiles import customer_visitors_key, erase_visitor
from enrichment.crm import erase_customer
from store import keys
from store.config import Settings
from store.persistence import PersistenceError, rewrite_append_only_file
from store.redis_client import reply_text
from store.tenants import Tenant

RECEIPTS_KEPT = 10_000


class ErasureError(ValueError):
    pass


# Named in store.keys; kept here under the names callers import.
receipts_key = keys.erasure_receipts
trained_versions_key = keys.trained_model_versions


def _erase_dedupe_keys(r: redis.Redis, tenant: str, visitor: str) -> int:
    # The dedupe hashes carry the visitor id in their names; they expire within DEDUPE_DAYS but
    # erasure is now.
    # (Per-event dedupe keys of versions before 2026-11 expired 48 h after the upgrade.)
    today = int(time.time() // DAY_S)
    days = range(today - DEDUPE_DAYS, today + 2)  # a day either side for clock edges
    return int(r.unlink(*(dedupe_key(tenant, visitor, day) for day in days)))


def erase_person(
    r: redis.Redis,
    settings: Settings,
    tenant: Tenant,
    customer_id: str | None = None,
    visitor_id: str | None = None,
) -> dict:
    """Remove a CRM customer (raw id, hashed here) and/or a visitor; returns the receipt."""
    if not customer_id and not visitor_id:
        raise ErasureError("give customer_id, visitor_id or both")
    customer_hash = tenant.hash_customer_id(customer_id) if customer_id else None
    visitors: set[str] = {visitor_id} if visitor_id else set()
    if customer_hash:
        linked = r.smembers(customer_visitors_key(tenant.name, customer_hash))
        visitors |= {v.decode() if isinstance(v, bytes) else v for v in linked}

    live_keys = dedupe_keys = 0
    # Campaign records (groups, conversions, trigger windows) name the person in their keys;
    # the campaign counters are aggregates and stay.
    people = [f"v:{v}" for v in visitors] + ([f"c:{customer_hash}"] if customer_hash else [])
    if people:
        live_keys += int(r.unlink(*(keys.person_campaigns(tenant.name, p) for p in people)))
    if customer_hash:  # an offline channel's response names the customer too
        campaign_ids = [reply_text(c) for c in r.hkeys(keys.campaign_definitions(tenant.name))]
        for cid in campaign_ids:
            live_keys += int(r.hdel(keys.campaign_responses(tenant.name, cid), customer_hash))
    for visitor in sorted(visitors):
        live_keys += erase_visitor(r, tenant.name, visitor)
        dedupe_keys += _erase_dedupe_keys(r, tenant.name, visitor)
    crm: Mapping[str, object] = {}  # the CRM side's receipt when a customer was named
    if customer_hash:
        live_keys += r.delete(customer_visitors_key(tenant.name, customer_hash))
        crm = erase_customer(r, settings, tenant.name, customer_hash)
    events = erase_events(
        r,
        settings.events_dir,
        tenant.name,
        visitor_ids=sorted(visitors),
        customer_ids=[customer_hash] if customer_hash else [],
    )
    # Last: the stream entries and profile writes just deleted are still in Redis's
    # append-only log until it is rewritten from the live data.
    try:
        aof = rewrite_append_only_file(r)
    except PersistenceError as err:
        aof = f"failed: {err}"
    trained = sorted(
        v.decode() if isinstance(v, bytes) else v
        for v in r.smembers(trained_versions_key(tenant.name))
    )
    receipt = {
        "receipt_id": uuid.uuid4().hex,
        "tenant": tenant.name,
        "erased_at": time.time(),
        "customer_hash": customer_hash,
        "visitors_erased": len(visitors),
        "removed": {
            "live_profile_keys": live_keys,
            "dedupe_keys": dedupe_keys,
            "stream_events": events.get("stream_entries", 0),
            "archived_events": events.get("archive_rows", 0),
            "crm_serving_profiles": crm.get("serving_profiles_removed", 0),
            "crm_rows": crm.get("customer_rows_removed", 0),
            "crm_holding_rows": crm.get("holding_rows_removed", 0),
            "crm_versions_rewritten": crm.get("versions_rewritten", []),
        },
        # rewritten | not enabled | in progress | failed: <reason>
        "redis_append_only_file": aof,
        # Every model version trained so far may have seen this person: staff retrain them.
        "model_versions_to_retrain": trained,
    }
    pipe = r.pipeline(transaction=False)
    pipe.lpush(receipts_key(tenant.name), orjson.dumps(receipt))
    pipe.ltrim(receipts_key(tenant.name), 0, RECEIPTS_KEPT - 1)
    pipe.execute()
    return receipt


def list_receipts(r: redis.Redis, tenant: str, limit: int = 100) -> list[dict]:
    return [orjson.loads(x) for x in r.lrange(receipts_key(tenant), 0, limit - 1)]
