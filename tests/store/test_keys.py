"""Redis key names: built only in store/keys.py, each under its tenant's hash tag, and unchanged.

The strings below are the names existing data is stored under: a renamed key orphans it, so
they are pinned here literally instead of being computed the way keys.py computes them.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from clickstream.ingest import Ingestor
from store import keys
from store.tenants import create_tenant, get_tenant

ROOT = Path(__file__).resolve().parents[2]
SID = "v3.1a2b3c4d"
HASH = "0123456789abcdef0123456789abcdef"

# Every tenant key function with sample arguments, and the key it must name for tenant "acme".
PINNED: dict[str, tuple[tuple, str]] = {
    "tenant_config": ((), "{t:acme}:config"),
    "event_stream": ((), "{t:acme}:events"),
    "rate_window": ((1_767_225_600.9,), "{t:acme}:rl:1767225600"),
    "event_type_counts": (("2026-03-01",), "{t:acme}:stats:2026-03-01"),
    "popularity": ((), "{t:acme}:pop"),
    "segment_popularity": ((7,), "{t:acme}:pop:seg:7"),
    "traffic_minutes": (("2026-03-01",), "{t:acme}:traffic:2026-03-01"),
    "daily_visitors": (("2026-03-01",), "{t:acme}:visitors:2026-03-01"),
    "daily_identified": (("2026-03-01",), "{t:acme}:visitors:identified:2026-03-01"),
    "segment_events": (("2026-03-01",), "{t:acme}:segev:2026-03-01"),
    "dedupe_ids": (("vis-1", 20_500), "{t:acme}:dedupe:vis-1:20500"),
    "visitor_key": (("vis-1", "cart"), "{t:acme}:v:vis-1:cart"),
    "customer_visitors": ((HASH,), f"{{t:acme}}:cv:{HASH}"),
    "catalog_products": ((), "{t:acme}:catalog"),
    "catalog_categories": ((), "{t:acme}:catalog:cat"),
    "catalog_version": ((), "{t:acme}:catalog:version"),
    "catalog_products_staging": ((), "{t:acme}:catalog:staging"),
    "catalog_categories_staging": ((), "{t:acme}:catalog:cat:staging"),
    "archive_state": ((), "{t:acme}:archive:state"),
    "archive_lock": ((), "{t:acme}:archive:lock"),
    "crm_serving_id": ((), "{t:acme}:crm:current"),
    "crm_namespaces": ((), "{t:acme}:crm:namespaces"),
    "crm_erased": ((), "{t:acme}:crm:erased"),
    "crm_meta": ((SID,), f"{{t:acme}}:crm:s:{SID}:meta"),
    "crm_profiles": ((SID, "0af"), f"{{t:acme}}:crm:s:{SID}:p:0af"),
    "crm_lock": ((), "{t:acme}:crm:lock"),
    "model_versions": ((), "{t:acme}:models:versions"),
    "model_champion": ((), "{t:acme}:models:champion"),
    "champion_history": ((), "{t:acme}:models:history"),
    "trained_model_versions": ((), "{t:acme}:models:trained"),
    "models_to_retrain": ((), "{t:acme}:models:retrain"),
    "model_drift": (("v1",), "{t:acme}:models:drift:v1"),
    "erasure_receipts": ((), "{t:acme}:erasures"),
    "erased_people": ((), "{t:acme}:erased"),
    "erasures_running": ((), "{t:acme}:erasures:running"),
    "offer_rules": ((), "{t:acme}:rules"),
    "offer_rules_version": ((), "{t:acme}:rules:version"),
    "campaign_definitions": ((), "{t:acme}:cmp:defs"),
    "campaign_names": ((), "{t:acme}:cmp:names"),
    "campaigns_version": ((), "{t:acme}:cmp:version"),
    "campaign_counters": (("c1",), "{t:acme}:cmp:c1:n"),
    "person_campaigns": (("v:vis-1",), "{t:acme}:pc:v:vis-1"),
    "offer_token_uses": ((20_500,), "{t:acme}:tok:20500"),
    "campaign_responses": (("c1",), "{t:acme}:cmp:c1:resp"),
}
# The tag, its builder, and visitor_keys (a dict of visitor_key names, checked on its own).
BUILDERS = {
    "tenant_prefix",
    "tenant_key",
    "visitor_keys",
    "campaign_counters_parts",
    "identity_parts",
}


def _tenant_functions() -> dict[str, Callable]:
    return {
        name: fn
        for name, fn in vars(keys).items()
        if inspect.isfunction(fn)
        and fn.__module__ == keys.__name__
        and next(iter(inspect.signature(fn).parameters)) == "tenant"
    }


def _named(tenant: str) -> list[str]:
    names = [getattr(keys, fn)(tenant, *args) for fn, (args, _) in PINNED.items()]
    return names + list(keys.visitor_keys(tenant, "vis-1").values())


def test_every_key_keeps_its_stored_name() -> None:
    assert {fn: getattr(keys, fn)("acme", *args) for fn, (args, _) in PINNED.items()} == {
        fn: want for fn, (_, want) in PINNED.items()
    }
    assert keys.visitor_keys("acme", "vis-1") == {
        part: f"{{t:acme}}:v:vis-1:{part}"
        for part in ("profile", "recent", "cart", "bought", "aff")
    }
    assert (keys.TENANTS, keys.KEY_HASHES, keys.SERVER_SECRET, keys.JOB_QUEUE) == (
        "offerwise:tenants",
        "offerwise:keyhash",
        "offerwise:secret",
        "offerwise",
    )


def test_every_tenant_key_function_is_pinned() -> None:
    # A new key function must say here what it names, so the hash-tag check below covers it.
    assert set(_tenant_functions()) - BUILDERS == set(PINNED)


@pytest.mark.parametrize("tenant", ["acme", "shop-2", "a1"])
def test_every_key_of_a_tenant_carries_its_hash_tag(tenant: str) -> None:
    tag = f"{{t:{tenant}}}"
    assert keys.tenant_prefix(tenant) == tag
    for name in _named(tenant):
        assert name.startswith(tag + ":"), name
        # The slot Redis Cluster would put it in: the tenant's, so its scripts stay legal.
        assert key_slot(name.encode()) == key_slot(tag.encode()), name


def test_the_ingest_script_credits_the_segment_popularity_key_keys_names(r: redis.Redis) -> None:
    create_tenant(r, "acme", rate_limit=10_000)
    tenant = get_tenant(r, "acme")
    assert tenant is not None
    r.hset(keys.visitor_key("acme", "vis-1"), "zip_segment_id", "4")
    event = {"id": "e1", "type": "purchase", "product_id": "p1", "ts": int(time.time() * 1000)}
    Ingestor(r).ingest(tenant, "vis-1", [event])
    assert r.zscore(keys.segment_popularity("acme", 4), "p1") == r.zscore(
        keys.popularity("acme"), "p1"
    )
    assert r.zscore(keys.popularity("acme"), "p1") > 0


# A key built outside store/keys.py: the builder, the tag, a literal joined to a key function's
# name (``catalog_key(t) + ":staging"``, ``f"{popularity_key(t)}:seg:..."``), or a Lua script
# deriving a key from a hard-coded literal (``KEYS[4] .. ':seg:'``). ``join_key`` names a file in the
# artifact store (store.artifacts), not a Redis key.
BUILDING = re.compile(
    r"tenant_key\(|tenant_prefix\(|\{t:|\{\{t:"
    r"|(?:(?<!join)_key|keys\.\w+)\([^()]*\)\s*\+\s*f?[\"']"
    r"|f[\"'][^\"']*\{[^{}]*(?:(?<!join)_key|keys\.\w+)\([^{}]*\)\}"
    r"|KEYS\[\d+\]\s*\.\.\s*[\"']"
)


def _source_files() -> list[Path]:
    skip = {"tests", "node_modules", "var"}
    files = []
    for top in sorted(ROOT.iterdir()):
        if top.is_dir() and not top.name.startswith(".") and top.name not in skip:
            files += [p for p in top.rglob("*.py") if not skip & set(p.parts)]
    return files


def test_no_module_outside_store_keys_builds_a_key() -> None:
    files = _source_files()
    assert ROOT / "store" / "keys.py" in files and len(files) > 50  # the scan sees the tree
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        if path != ROOT / "store" / "keys.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BUILDING.search(line)
    ]
    assert not found, "ask store.keys for these keys:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        '    return keys.tenant_key(tenant, "x")',
        '    staging = catalog_key(tenant) + ":staging"',
        '    return f"{popularity_key(tenant)}:seg:{segment}"',
        "  redis.call('ZINCRBY', KEYS[4] .. ':seg:' .. seg, w, pid)",
        '    r.get("{t:acme}:pop")',
    ],
)
def test_the_scan_recognises_a_key_built_by_hand(line: str) -> None:
    assert BUILDING.search(line)


def test_campaign_counter_parts_rebuild_the_counter_key() -> None:
    prefix, suffix = keys.campaign_counters_parts("acme")
    assert prefix + "c1" + suffix == keys.campaign_counters("acme", "c1")
    assert keys.person_campaigns("acme", "c:") + HASH == keys.person_campaigns("acme", f"c:{HASH}")


@pytest.mark.parametrize("tenant", ["acme", "shop-2"])
def test_identity_parts_rebuild_the_keys_they_stand_for(tenant: str) -> None:
    """The offer request's script joins these pieces to the customer hash and serving id."""
    parts = keys.identity_parts(tenant)
    customer, sid = "0123456789abcdef0123456789abcdef", "v3.deadbeef"
    assert parts["customer_visitors"][0] + customer == keys.customer_visitors(tenant, customer)
    before, between = parts["crm_profiles"]
    assert before + sid + between + customer[:3] == keys.crm_profiles(tenant, sid, customer[:3])
    assert parts["person"][0] + customer == keys.person_campaigns(tenant, f"c:{customer}")
