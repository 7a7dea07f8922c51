"""Tenants and their API keys.

Keys are random, high-entropy tokens shown once at creation or rotation; only their SHA-256 hashes
are stored. The site key is public (it sits in the shop's pages) and may only collect events and
ask for offers from the tenant's allowed origins; the admin key is the tenant admin's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import redis
from redis.exceptions import ClusterError
from redis.typing import EncodableT

from store import keys
from store.redis_client import reply_text

SITE_KEY_PREFIX = "ow_site_"
ADMIN_KEY_PREFIX = "ow_admin_"
DEFAULT_RATE_LIMIT = 100  # requests per second per site key


class TenantError(ValueError):
    """A tenant operation refused for a reason the caller can fix (bad name, duplicate...)."""


class UnknownTenant(TenantError):
    """No tenant of that name."""


class TenantExists(TenantError):
    """A tenant of that name exists already."""


DEFAULT_HOLDOUT_SHARE = 0.05
MAX_HOLDOUT_SHARE = 0.5


@dataclass(frozen=True)
class Tenant:
    name: str
    origins: tuple[str, ...]
    rate_limit: int
    created_at: float
    id_secret: bytes  # per-tenant HMAC secret for customer ids
    # Share of people kept on popularity offers only (no model, no campaign), to measure
    # personalization as a whole against that baseline.
    holdout_share: float = DEFAULT_HOLDOUT_SHARE

    def public(self) -> dict:
        return {
            "tenant": self.name,
            "origins": list(self.origins),
            "rate_limit": self.rate_limit,
            "holdout_share": self.holdout_share,
            "created_at": self.created_at,
        }

    def hash_customer_id(self, customer_id: str) -> str:
        """Keyed hash of a raw CRM customer id; raw ids are never stored."""
        return hmac.new(self.id_secret, customer_id.strip().encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def erased_marks(self, customer_hash: str | None, visitors: Iterable[str]) -> list[str]:
        """The members of ``store.keys.erased_people`` naming this person: the customer's hash
        and keyed hashes of their visitor ids (no raw id is kept)."""
        marks = [f"v:{self.hash_customer_id('visitor:' + v)}" for v in visitors]
        return marks + ([f"c:{customer_hash}"] if customer_hash else [])

    def allows_origin(self, origin: str | None) -> bool:
        """Browser requests must come from an allowed origin; server-side calls send none."""
        if origin is None:
            return True
        return origin.rstrip("/").lower() in self.origins


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normalize_origin(origin: str) -> str:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise TenantError(f"origin {origin!r} must look like https://shop.example[:port]")
    return f"{parts.scheme}://{parts.netloc}".lower()


def validate_name(name: str) -> str:
    if not keys.TENANT_NAME_RE.match(name or ""):
        raise TenantError(
            f"tenant name {name!r} must be 2-48 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return name


def _new_keys() -> tuple[str, str]:
    return SITE_KEY_PREFIX + secrets.token_urlsafe(18), ADMIN_KEY_PREFIX + secrets.token_urlsafe(30)


def create_tenant(
    r: redis.Redis, name: str, origins: list[str] | None = None, rate_limit: int | None = None
) -> dict:
    validate_name(name)
    normalized = sorted({normalize_origin(o) for o in origins or []})
    rate = int(rate_limit or DEFAULT_RATE_LIMIT)
    if rate < 1:
        raise TenantError("rate limit must be at least 1 request per second")
    site_key, admin_key = _new_keys()
    if not r.sadd(keys.TENANTS, name):
        raise TenantExists(f"name: tenant {name!r} already exists")
    # The tenant's config, then the key lookup: one write each, never one transaction, since
    # on a Redis Cluster the global lookup and the tenant's keys live in different slots. A
    # crash in between leaves a tenant whose keys do not resolve yet; `tenant rotate-keys`
    # issues working ones.
    r.hset(
        keys.tenant_config(name),
        mapping={
            "name": name,
            "origins": orjson.dumps(normalized),
            "rate_limit": rate,
            "created_at": time.time(),
            "id_secret": secrets.token_hex(32),
            "site_key_hash": hash_key(site_key),
            "admin_key_hash": hash_key(admin_key),
        },
    )
    r.hset(
        keys.KEY_HASHES,
        mapping={hash_key(site_key): f"site:{name}", hash_key(admin_key): f"admin:{name}"},
    )
    return {"tenant": name, "site_key": site_key, "admin_key": admin_key}


def get_tenant(r: redis.Redis, name: str) -> Tenant | None:
    raw = r.hgetall(keys.tenant_config(name))
    if not raw:
        return None
    cfg = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}

    def text(v: bytes | str) -> str:
        return v.decode() if isinstance(v, bytes) else v

    return Tenant(
        name=text(cfg["name"]),
        origins=tuple(orjson.loads(cfg["origins"])),
        rate_limit=int(cfg["rate_limit"]),
        created_at=float(cfg["created_at"]),
        id_secret=bytes.fromhex(text(cfg["id_secret"])),
        holdout_share=float(cfg.get("holdout_share", DEFAULT_HOLDOUT_SHARE)),
    )


def list_tenants(r: redis.Redis) -> list[Tenant]:
    names = sorted(n.decode() if isinstance(n, bytes) else n for n in r.smembers(keys.TENANTS))
    return [t for t in (get_tenant(r, n) for n in names) if t is not None]


def update_tenant(
    r: redis.Redis,
    name: str,
    origins: list[str] | None = None,
    rate_limit: int | None = None,
    holdout_share: float | None = None,
) -> Tenant:
    if get_tenant(r, name) is None:
        raise UnknownTenant(f"no tenant named {name!r}")
    mapping: dict[EncodableT, EncodableT] = {}  # hset's type (its keys are invariant)
    if origins is not None:
        mapping["origins"] = orjson.dumps(sorted({normalize_origin(o) for o in origins}))
    if rate_limit is not None:
        if rate_limit < 1:
            raise TenantError("rate limit must be at least 1 request per second")
        mapping["rate_limit"] = int(rate_limit)
    if holdout_share is not None:
        if not 0 <= holdout_share <= MAX_HOLDOUT_SHARE:
            raise TenantError(f"holdout share must be between 0 and {MAX_HOLDOUT_SHARE}")
        mapping["holdout_share"] = float(holdout_share)
    if mapping:
        r.hset(keys.tenant_config(name), mapping=mapping)
    tenant = get_tenant(r, name)
    assert tenant is not None
    return tenant


def rotate_keys(r: redis.Redis, name: str) -> dict:
    """Issue new keys; the old ones stop working at once (after the resolvers' short cache)."""
    cfg_key = keys.tenant_config(name)
    old = r.hmget(cfg_key, "site_key_hash", "admin_key_hash")
    if old[0] is None:
        raise UnknownTenant(f"no tenant named {name!r}")
    site_key, admin_key = _new_keys()
    # The lookup in one transaction of its own (one key: one slot on a Redis Cluster too), then
    # the config: the old keys stop working first. A crash in between leaves the config naming
    # the old hashes, which the next rotation removes again (a no-op), and two lookup entries
    # for keys that were never shown to anyone.
    pipe = r.pipeline(transaction=True)
    pipe.hdel(keys.KEY_HASHES, *[h for h in old if h])
    pipe.hset(
        keys.KEY_HASHES,
        mapping={hash_key(site_key): f"site:{name}", hash_key(admin_key): f"admin:{name}"},
    )
    pipe.execute()
    r.hset(
        cfg_key,
        mapping={"site_key_hash": hash_key(site_key), "admin_key_hash": hash_key(admin_key)},
    )
    return {"tenant": name, "site_key": site_key, "admin_key": admin_key}


class KeyResolver:
    """Maps an API key to (kind, Tenant) with a short in-process cache.

    The hot endpoints resolve a key on every request; caching for ``ttl`` seconds saves a Redis
    round trip per request at the cost of a rotated or changed tenant taking up to ``ttl`` seconds
    to be seen by every worker. While the store is unreachable an expired entry is still
    answered (stale if error), so a recommend can degrade to cached offers instead of failing
    on the key; a key never seen before is refused (the error rises).
    """

    def __init__(self, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, tuple[str, Tenant] | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, r: redis.Redis, key: str | None) -> tuple[str, Tenant] | None:
        if not key or len(key) > 128:
            return None
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = r.hget(keys.KEY_HASHES, digest)
            result: tuple[str, Tenant] | None = None
            if found:
                kind, _, name = reply_text(found).partition(":")
                tenant = get_tenant(r, name)
                if tenant is not None:
                    result = (kind, tenant)
        except (redis.ConnectionError, redis.TimeoutError, ClusterError):
            if hit is None:
                raise
            return hit[1]
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[digest] = (now + self.ttl, result)
        return result

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
