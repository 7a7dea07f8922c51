"""Erasure of one person everywhere: live profiles, CRM versions, event stream and archive.

It sits in ``models/`` because it is the lowest package that can see all the places a person
lives (``clickstream`` and ``enrichment`` are siblings) and because it must know which model
versions were trained on the person (``models.lineage``), so that staff can retrain those
(``offerwise models retrain-erased``). The receipt keeps only hashed identifiers.
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
from models import lineage, registry
from store import keys
from store.artifacts import events_store
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
    receipt_id = uuid.uuid4().hex
    # Marked running before the registered versions are read: a training that registers
    # meanwhile sees the mark and flags itself (models.lineage).
    lineage.erasure_started(r, tenant.name, receipt_id, time.time())
    try:
        return _erase(r, settings, tenant, receipt_id, customer_id, visitor_id)
    finally:
        lineage.erasure_finished(r, tenant.name, receipt_id)


def _erase(
    r: redis.Redis,
    settings: Settings,
    tenant: Tenant,
    receipt_id: str,
    customer_id: str | None,
    visitor_id: str | None,
) -> dict:
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
    # Remembered (hashed) so that a history import of older analytics cannot bring them back.
    r.sadd(keys.erased_people(tenant.name), *tenant.erased_marks(customer_hash, visitors))
    for visitor in sorted(visitors):
        live_keys += erase_visitor(r, tenant.name, visitor)
        dedupe_keys += _erase_dedupe_keys(r, tenant.name, visitor)
    crm: Mapping[str, object] = {}  # the CRM side's receipt when a customer was named
    if customer_hash:
        live_keys += r.delete(customer_visitors_key(tenant.name, customer_hash))
        crm = erase_customer(r, settings, tenant.name, customer_hash)
    events = erase_events(
        r,
        events_store(settings),
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
    models = _versions_that_saw(r, settings, tenant, customer_hash, visitors)
    receipt = {
        "receipt_id": receipt_id,
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
        # The versions trained on this person (by their lineage filters), and those without
        # lineage that may have been: `offerwise models retrain-erased` replaces them.
        "model_versions_to_retrain": models["saw_person"] + models["no_lineage"],
        "model_lineage": models,
    }
    retrain = receipt["model_versions_to_retrain"]
    lineage.flag_for_retraining(
        r, tenant.name, retrain, f"trained on a person erased by {receipt_id}"
    )
    pipe = r.pipeline(transaction=False)
    pipe.lpush(receipts_key(tenant.name), orjson.dumps(receipt))
    pipe.ltrim(receipts_key(tenant.name), 0, RECEIPTS_KEPT - 1)
    pipe.execute()
    return receipt


def _versions_that_saw(
    r: redis.Redis,
    settings: Settings,
    tenant: Tenant,
    customer_hash: str | None,
    visitors: set[str],
) -> dict:
    """Every trained version still registered, by whether its lineage names the person.

    A version already superseded by a retraining is no longer served, and retraining again
    would not change it: it is listed apart (``models delete`` removes it)."""
    trained = sorted(reply_text(v) for v in r.smembers(trained_versions_key(tenant.name)))
    registered = {
        reply_text(k): orjson.loads(v)
        for k, v in r.hgetall(registry.versions_key(tenant.name)).items()
    }
    out: dict = {"checked": [], "saw_person": [], "no_lineage": [], "superseded_saw_person": []}
    for version in trained:
        if version not in registered:
            continue  # deleted with its artifacts: nothing of it is left
        out["checked"].append(version)
        folder = registry.version_dir(settings, tenant.name, version)
        found = lineage.saw(tenant, folder, customer_hash, sorted(visitors))
        if (found is None or found) and registered[version].get("superseded_by"):
            out["superseded_saw_person"].append(version)
        elif found is None:
            out["no_lineage"].append(version)
        elif found:
            out["saw_person"].append(version)
    out["champion"] = registry.champion(r, tenant.name)
    out["false_positive_rate"] = lineage.FALSE_POSITIVE_RATE
    return out


def list_receipts(r: redis.Redis, tenant: str, limit: int = 100) -> list[dict]:
    return [orjson.loads(x) for x in r.lrange(receipts_key(tenant), 0, limit - 1)]
