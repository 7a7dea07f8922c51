"""Redis key naming: every key the service names is built here, and only here.

Every key that belongs to one tenant starts with the hash tag ``{t:<tenant>}`` so that all of a
tenant's keys live in one Redis Cluster slot: multi-key scripts and transactions on them stay legal
when the deployment moves from one Redis server to a cluster. Global keys (the tenant index and the
key-hash lookup) carry the ``offerwise:`` prefix and are touched only by admin paths and cached by
the hot paths.

Other modules ask for a key by what it holds and never join key parts themselves
(``tests/store/test_keys.py`` checks both rules). The strings are the stored data's names: changing
one orphans what is stored under the old name, so ``tests/store/test_keys.py`` also pins each of them.
Each function names the key's Redis type and who writes it.
"""

from __future__ import annotations

import re

TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")

# Global keys
TENANTS = "offerwise:tenants"  # set of tenant names; store.tenants
KEY_HASHES = "offerwise:keyhash"  # hash: sha256(key) -> "<kind>:<tenant>"; store.tenants
SERVER_SECRET = "offerwise:secret"  # random secret for signing offer tokens
# The rq queue of background jobs (clickstream.worker). rq names its own keys from it
# (rq:queue:offerwise, rq:job:<id>, ...); those stay rq's business.
JOB_QUEUE = "offerwise"


def tenant_prefix(tenant: str) -> str:
    """The hash tag that starts every key of ``tenant``."""
    return f"{{t:{tenant}}}"


def tenant_key(tenant: str, *parts: str) -> str:
    """``{t:<tenant>}:part1:part2``: the builder behind the functions below, for this module only.
    Parts must not be user-controlled without validation."""
    return ":".join((tenant_prefix(tenant), *parts))


# ------------------------------------------------------------------ tenants and traffic
def tenant_config(tenant: str) -> str:
    """Hash: origins, rate limit, key hashes, id secret; written by store.tenants."""
    return tenant_key(tenant, "config")


def event_stream(tenant: str) -> str:
    """Stream of accepted events; appended by the ingest script, trimmed by the archiver."""
    return tenant_key(tenant, "events")


def rate_window(tenant: str, now_s: float) -> str:
    """String counter of requests in one second; counted by the ingest and recommend scripts."""
    return tenant_key(tenant, "rl", str(int(now_s)))


def event_type_counts(tenant: str, day: str) -> str:
    """Hash event type -> count on one UTC day (``YYYY-MM-DD``); written by the ingest script."""
    return tenant_key(tenant, "stats", day)


def popularity(tenant: str) -> str:
    """Sorted set product -> decayed weighted credits; written by the ingest script."""
    return tenant_key(tenant, "pop")


# The ingest script derives a segment's popularity key itself, from the segment it reads off the
# visitor's profile: ``popularity(tenant) .. SEGMENT_POPULARITY_INFIX .. segment``. The script
# text is rendered with this infix (clickstream.ingest), so both sides name the same key, and
# the derived key keeps the popularity key's hash tag.
SEGMENT_POPULARITY_INFIX = ":seg:"


def segment_popularity(tenant: str, segment: int | str) -> str:
    """Sorted set like ``popularity`` among visitors of one ZIP segment; the ingest script."""
    return f"{popularity(tenant)}{SEGMENT_POPULARITY_INFIX}{segment}"


# Overview counters for the admin dashboard, kept by the ingest script in the same call as the
# events (no extra round trip): a few O(1) commands per batch.
def traffic_minutes(tenant: str, day: str) -> str:
    """Hash on one UTC day (``YYYY-MM-DD``): minute of the day -> new events, and
    ``<minute>:imp`` -> offer impressions; written by the ingest script, kept two days."""
    return tenant_key(tenant, "traffic", day)


def daily_visitors(tenant: str, day: str) -> str:
    """HyperLogLog of the tracked visitors seen on one UTC day (an estimate: no id can be read
    back out of it); written by the ingest script, kept eight days."""
    return tenant_key(tenant, "visitors", day)


def daily_identified(tenant: str, day: str) -> str:
    """HyperLogLog of the tracked visitors seen identified (logged in) on one UTC day; the
    ingest script, kept eight days."""
    return tenant_key(tenant, "visitors", "identified", day)


def segment_events(tenant: str, day: str) -> str:
    """Sorted set ZIP segment id -> new events of visitors in it on one UTC day; the ingest
    script, kept eight days."""
    return tenant_key(tenant, "segev", day)


def dedupe_ids(tenant: str, visitor: str, day: int) -> str:
    """Hash event id -> 1: the ids ``visitor`` sent on UTC day number ``day`` (epoch days);
    written by the ingest script. Not under ``dd``, the per-event string keys of earlier
    versions: an event id that happened to be a day number would have named a string key."""
    return tenant_key(tenant, "dedupe", visitor, str(day))


# ------------------------------------------------------------------ live visitor profiles
# ``v:<visitor>:<part>``, written by the ingest script (profile also by identify/zip events):
# profile hash (counters, first/last seen, zip block, customer), recent list, cart set,
# bought sorted set (product -> time), aff sorted set (category -> decayed affinity).
VISITOR_PARTS = ("profile", "recent", "cart", "bought", "aff")


def visitor_key(tenant: str, visitor: str, part: str = "profile") -> str:
    """One of the visitor's ``VISITOR_PARTS``."""
    return tenant_key(tenant, "v", visitor, part)


def visitor_keys(tenant: str, visitor: str) -> dict[str, str]:
    """Every part -> its ``visitor_key``, the prefix built once (both hot paths call this)."""
    base = visitor_key(tenant, visitor, "")
    return {part: base + part for part in VISITOR_PARTS}


def customer_visitors(tenant: str, customer_hash: str) -> str:
    """Set of visitors linked to a CRM customer by ``identify`` (ingest); merged, erased."""
    return tenant_key(tenant, "cv", customer_hash)


# ------------------------------------------------------------------ catalog
def catalog_products(tenant: str) -> str:
    """Hash product id -> product JSON; replaced whole by clickstream.catalog."""
    return tenant_key(tenant, "catalog")


def catalog_categories(tenant: str) -> str:
    """Hash product id -> category; replaced by clickstream.catalog, read by the ingest script."""
    return tenant_key(tenant, "catalog", "cat")


def catalog_version(tenant: str) -> str:
    """String counter, incremented by clickstream.catalog with each replacement."""
    return tenant_key(tenant, "catalog", "version")


def catalog_products_staging(tenant: str) -> str:
    """Hash like ``catalog_products``, built by a re-import and renamed over it."""
    return tenant_key(tenant, "catalog", "staging")


def catalog_categories_staging(tenant: str) -> str:
    """Hash like ``catalog_categories``, built by a re-import and renamed over it."""
    return tenant_key(tenant, "catalog", "cat", "staging")


# ------------------------------------------------------------------ archive
def archive_state(tenant: str) -> str:
    """Hash: the committed cursor and staged batch; written by clickstream.archiver."""
    return tenant_key(tenant, "archive", "state")


def archive_lock(tenant: str) -> str:
    """String: the token of the archiver holding the tenant (expiring); clickstream.archiver."""
    return tenant_key(tenant, "archive", "lock")


# ------------------------------------------------------------------ CRM (enrichment.crm)
def crm_serving_id(tenant: str) -> str:
    """String: the live serving id ``<version>.<nonce>``; set by enrichment.crm.serving."""
    return tenant_key(tenant, "crm", "current")


def crm_namespaces(tenant: str) -> str:
    """Set of serving ids that may have keys; enrichment.crm.serving."""
    return tenant_key(tenant, "crm", "namespaces")


def crm_erased(tenant: str) -> str:
    """Set of erased customers' hashes, skipped by later imports; enrichment.crm.erase."""
    return tenant_key(tenant, "crm", "erased")


def crm_meta(tenant: str, sid: str) -> str:
    """String (JSON): attribute names and types of serving id ``sid``; enrichment.crm.serving."""
    return tenant_key(tenant, "crm", "s", sid, "meta")


def crm_profiles(tenant: str, sid: str, bucket: str) -> str:
    """Hash customer hash -> profile JSON array, one of 4096 buckets; enrichment.crm.serving."""
    return tenant_key(tenant, "crm", "s", sid, "p", bucket)


def crm_lock(tenant: str) -> str:
    """redis-py lock: one CRM writer per tenant; enrichment.crm.versions.TenantLock."""
    return tenant_key(tenant, "crm", "lock")


# ------------------------------------------------------------------ models and offers
def model_versions(tenant: str) -> str:
    """Hash version -> metadata JSON; written by models.registry."""
    return tenant_key(tenant, "models", "versions")


def model_champion(tenant: str) -> str:
    """String: the champion version; set by models.registry."""
    return tenant_key(tenant, "models", "champion")


def champion_history(tenant: str) -> str:
    """List of former champions, newest first (what rollback goes back to); models.registry."""
    return tenant_key(tenant, "models", "history")


def trained_model_versions(tenant: str) -> str:
    """Set of versions trained on the tenant's data (erasure lists them); models.registry."""
    return tenant_key(tenant, "models", "trained")


def models_to_retrain(tenant: str) -> str:
    """Hash version -> why it must be retrained (it saw a person since erased, or trained while
    an erasure ran); set by models.erasure and models.pipeline, cleared by a retraining."""
    return tenant_key(tenant, "models", "retrain")


def model_drift(tenant: str, version: str) -> str:
    """Hash of a version's live samples: feature bin counts ``f<j>:<bin>``, ``samples``, and the
    served offers' ``d<k>:offers`` and ``d<k>:score_sum`` per score decile; models.drift."""
    return tenant_key(tenant, "models", "drift", version)


def erasure_receipts(tenant: str) -> str:
    """List of erasure receipts (JSON), newest first; written by models.erasure."""
    return tenant_key(tenant, "erasures")


def erased_people(tenant: str) -> str:
    """Set of keyed hashes of the people erased (``c:<customer hash>``, ``v:<keyed hash of a
    visitor id>``), so a history import cannot bring them back; written by models.erasure."""
    return tenant_key(tenant, "erased")


def erasures_running(tenant: str) -> str:
    """Sorted set receipt id -> start time of the erasures under way (a training that
    overlaps one is flagged for retraining); models.erasure."""
    return tenant_key(tenant, "erasures", "running")


def offer_rules(tenant: str) -> str:
    """String (JSON): the admin's offer rules; written by campaigns.rules."""
    return tenant_key(tenant, "rules")


def offer_rules_version(tenant: str) -> str:
    """String counter, incremented by campaigns.rules with each save."""
    return tenant_key(tenant, "rules", "version")


# -- campaigns (campaigns/) --------------------------------------------------------------------
def campaign_definitions(tenant: str) -> str:
    """Hash: campaign id -> definition (JSON); written by campaigns.definitions."""
    return tenant_key(tenant, "cmp", "defs")


def campaign_names(tenant: str) -> str:
    """Hash: normalised campaign name -> campaign id (names are unique per tenant)."""
    return tenant_key(tenant, "cmp", "names")


def campaigns_version(tenant: str) -> str:
    """String counter, incremented with every campaign change; per-process caches follow it."""
    return tenant_key(tenant, "cmp", "version")


def campaign_counters(tenant: str, campaign_id: str) -> str:
    """Hash: ``<group>:<measure>`` -> number (people, exposures, impressions, clicks,
    conversions, revenue and the sums the report's adjustment needs), plus the same per score
    decile; kept at serving and collect time by campaigns.assignment and campaigns.measure."""
    return tenant_key(tenant, "cmp", campaign_id, "n")


def person_campaigns(tenant: str, person: str) -> str:
    """Hash: what the campaigns know of one person (``v:<visitor>`` or ``c:<customer hash>``):
    campaign id -> ``<group>|<assigned at>|<covariate>|<decile>``, ``<id>:conv`` (converted),
    ``<id>:rev`` (their revenue), ``<id>:trig`` (trigger window); campaigns.assignment."""
    return tenant_key(tenant, "pc", person)


def offer_token_uses(tenant: str, day: int) -> str:
    """Hash: offer token signature + event type -> the event id that used it (UTC day of the
    token's issue); a second event with another id replays it. campaigns.measure."""
    return tenant_key(tenant, "tok", str(day))


def campaign_responses(tenant: str, campaign_id: str) -> str:
    """Hash: customer hash -> response (JSON) imported from an offline channel's file."""
    return tenant_key(tenant, "cmp", campaign_id, "resp")


def campaign_counters_parts(tenant: str) -> tuple[str, str]:
    """What comes before and after the campaign id in ``campaign_counters``: the collect
    script derives the counters of the campaigns a batch touches from them."""
    prefix, _, suffix = campaign_counters(tenant, "\0").partition("\0")
    return prefix, suffix


def identity_parts(tenant: str) -> dict[str, tuple[str, ...]]:
    """The pieces the offer request's script derives an identified visitor's keys from, once
    it has read the customer hash on the profile: ``customer_visitors`` (prefix), the live CRM
    version's ``crm_profiles`` bucket (before the serving id, between it and the bucket) and the
    customer's ``person_campaigns`` (prefix). All under the tenant's hash tag, as declared keys."""
    cv, _, _ = customer_visitors(tenant, "\0").partition("\0")
    before, _, rest = crm_profiles(tenant, "\0", "\1").partition("\0")
    between, _, _ = rest.partition("\1")
    pc, _, _ = person_campaigns(tenant, "c:\0").partition("\0")
    return {"customer_visitors": (cv,), "crm_profiles": (before, between), "person": (pc,)}
