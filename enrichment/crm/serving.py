"""CRM serving profiles in Redis: one customer's attributes, ZIP and holdings in one round trip.

Layout (all keys under the tenant's hash tag, so one Redis Cluster slot; named in store.keys):

- ``crm:current`` (``crm_serving_id``): the live *serving id*, ``<version>.<nonce>`` (e.g.
  ``v3.1a2b3c4d``). Every load of a version (import, rollback, re-activation) gets a fresh
  nonce, so a namespace is never reused and per-process caches keyed by serving id can never
  go stale.
- ``crm:s:<sid>:p:<bucket>`` (``crm_profiles``): a hash, field = customer hash, value = the
  profile as a compact JSON array ``[zip, holdings, attr1, attr2, ...]``. Customers are spread
  over 4096 buckets by the first three hex digits of their hash: the buckets of a namespace are
  known without SCAN, so dropping a whole version is a few batched UNLINKs.
- ``crm:s:<sid>:meta`` (``crm_meta``): the attribute names and types of the array positions.
- ``crm:namespaces`` (``crm_namespaces``): every serving id that may have keys, so that a
  crashed import's leftovers can be found and dropped.

Going live is one SET of ``current``; readers check ``current`` in the same MULTI as the
profile read, so they never mix two versions.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections import defaultdict

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import redis

from enrichment.crm.jsonenc import json_arrays, json_values
from enrichment.crm.workers import Serial, column_map
from store import keys
from store.redis_client import reply_text

BUCKET_CHARS = 3
BUCKETS = [f"{i:03x}" for i in range(16**BUCKET_CHARS)]
FLUSH_ROWS = 100_000
PIPELINE_COMMANDS = 500
UNLINK_BATCH = 512
HASH_RE = re.compile(r"^[0-9a-f]{32}$")
_meta_cache: dict[str, dict] = {}
_live_cache: dict[str, str] = {}


# Named in store.keys; kept here under the names callers import.
current_key = keys.crm_serving_id
namespaces_key = keys.crm_namespaces
erased_key = keys.crm_erased  # suppression list: later imports skip these customers
meta_key = keys.crm_meta
bucket_key = keys.crm_profiles


def new_serving_id(version: str) -> str:
    return f"{version}.{secrets.token_hex(4)}"


def version_of(sid: str | None) -> str | None:
    return sid.split(".", 1)[0] if sid else None


def live_serving_id(r: redis.Redis, tenant: str) -> str | None:
    return reply_text(r.get(current_key(tenant)))


def current_version(r: redis.Redis, tenant: str) -> str | None:
    """The live CRM version (``"v3"``) or None when the tenant has none."""
    return version_of(live_serving_id(r, tenant))


class ServingWriter:
    """Writes one namespace's profiles in pipelined, bucket-grouped HSETs.

    Profiles are encoded column-wise with Arrow; the Redis round trips run on a helper thread,
    one flush at a time, overlapping the encoding of the next batch.
    """

    def __init__(
        self,
        r: redis.Redis,
        tenant: str,
        sid: str,
        attributes: list[str],
        holdings: pa.Table | None,
    ) -> None:
        self.r = r
        self.tenant = tenant
        self.sid = sid
        self.attributes = attributes
        # One row per customer (customer_hash, holdings JSON); looked up per batch in Arrow, which
        # holds a million customers' holdings in a fraction of the memory of a Python dict.
        self.holdings = holdings if holdings is not None and holdings.num_rows else None
        self.written = 0
        self._pending: dict[str, list[bytes | str]] = defaultdict(list)
        self._pending_rows = 0
        self._flusher = Serial("crm-redis")
        # Registered before any profile is written, so that a crash leaves a findable trail.
        r.sadd(namespaces_key(tenant), sid)

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        customer_hash = batch.column("customer_hash")
        if self.holdings is None:
            held = pa.repeat(pa.scalar("[]"), batch.num_rows)
        else:
            at = pc.index_in(customer_hash, value_set=self.holdings.column("customer_hash"))
            held = pc.fill_null(pc.take(self.holdings.column("holdings"), at), "[]")
        hashes = customer_hash.to_pylist()
        zips, *attributes = column_map(
            json_values, [batch.column(n) for n in ("zip", *self.attributes)]
        )
        blobs = (
            json_arrays([zips, held, *attributes])
            .cast(pa.binary())
            .to_numpy(zero_copy_only=False)
            .tolist()
        )
        pending = self._pending
        for h, blob in zip(hashes, blobs, strict=True):
            bucket = pending[h[:BUCKET_CHARS]]
            bucket.append(h)
            bucket.append(blob)
        self._pending_rows += len(hashes)
        if self._pending_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand the pending profiles to the writer thread (after the previous flush is done)."""
        pending, rows = self._pending, self._pending_rows
        self._pending = defaultdict(list)
        self._pending_rows = 0
        if rows:
            self._flusher.submit(self._write, pending, rows)

    def _write(self, pending: dict[str, list[bytes | str]], rows: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        queued = 0
        for bucket, flat in pending.items():
            pipe.execute_command("HSET", bucket_key(self.tenant, self.sid, bucket), *flat)
            queued += 1
            if queued >= PIPELINE_COMMANDS:
                pipe.execute()
                queued = 0
        if queued:
            pipe.execute()
        self.written += rows

    def finish(self, version: str, types: dict[str, str]) -> None:
        self.flush()
        self._flusher.close()
        meta = {
            "version": version,
            "attributes": self.attributes,
            "types": types,
            "customers": self.written,
        }
        self.r.set(meta_key(self.tenant, self.sid), orjson.dumps(meta))

    def close(self) -> None:
        """Stop the writer thread after a failure (an error of its own is dropped)."""
        with contextlib.suppress(Exception):
            self._flusher.close()


def go_live(r: redis.Redis, tenant: str, sid: str) -> str | None:
    """Point readers at ``sid``; returns the serving id that was live before."""
    pipe = r.pipeline(transaction=True)
    pipe.get(current_key(tenant))
    pipe.set(current_key(tenant), sid)
    previous, _ = pipe.execute()
    return reply_text(previous)


def drop_namespace(r: redis.Redis, tenant: str, sid: str) -> None:
    """Delete a namespace's keys; UNLINK frees the memory in Redis' background thread."""
    names = [meta_key(tenant, sid)] + [bucket_key(tenant, sid, b) for b in BUCKETS]
    # A call per chunk, not a pipeline: redis-py's cluster pipeline takes one key per UNLINK.
    for i in range(0, len(names), UNLINK_BATCH):
        r.unlink(*names[i : i + UNLINK_BATCH])
    r.srem(namespaces_key(tenant), sid)
    _meta_cache.pop(sid, None)


def namespaces(r: redis.Redis, tenant: str) -> list[str]:
    return sorted(reply_text(s) or "" for s in r.smembers(namespaces_key(tenant)))


def remove_customer(r: redis.Redis, tenant: str, customer_hash: str) -> int:
    """HDEL the customer from every namespace; returns how many profiles were removed."""
    sids = namespaces(r, tenant)
    if not sids:
        return 0
    pipe = r.pipeline(transaction=False)
    for sid in sids:
        pipe.hdel(bucket_key(tenant, sid, customer_hash[:BUCKET_CHARS]), customer_hash)
    return sum(pipe.execute())


def _meta(r: redis.Redis, tenant: str, sid: str) -> dict | None:
    meta = _meta_cache.get(sid)
    if meta is None:
        raw = r.get(meta_key(tenant, sid))
        if raw is None:
            return None
        meta = orjson.loads(raw)
        if len(_meta_cache) > 1000:
            _meta_cache.clear()
        _meta_cache[sid] = meta
    return meta


def live_attributes(r: redis.Redis, tenant: str) -> dict[str, str] | None:
    """Name -> type of the live CRM version's attributes (what a campaign audience can filter
    on), or None when no version is live."""
    live = live_serving_id(r, tenant)
    meta = _meta(r, tenant, live) if live is not None else None
    if meta is None:
        return None
    types = meta.get("types") or {}
    return {name: str(types.get(name, "text")) for name in meta["attributes"]}


def get_customer(r: redis.Redis, tenant: str, customer_hash: str) -> dict | None:
    """The live CRM profile of one customer (by keyed hash), or None.

    ``{"customer_hash", "version", "zip", "attributes": {name: value}, "holdings":
    [{"product_id", "quantity", "since"}]}``. One round trip: the live pointer is read in the same
    MULTI as the profile, with the serving id cached per process, so a switch is noticed at once.
    """
    if not isinstance(customer_hash, str) or not HASH_RE.match(customer_hash):
        return None
    bucket = customer_hash[:BUCKET_CHARS]
    sid = _live_cache.get(tenant)
    blob = None
    if sid is not None:
        pipe = r.pipeline(transaction=True)
        pipe.get(current_key(tenant))
        pipe.hget(bucket_key(tenant, sid, bucket), customer_hash)
        live, blob = pipe.execute()
        live = reply_text(live)
    else:
        live = live_serving_id(r, tenant)
    if live is None:
        _live_cache.pop(tenant, None)
        return None
    if live != sid:
        _live_cache[tenant] = sid = live
        blob = r.hget(bucket_key(tenant, sid, bucket), customer_hash)
    return _customer(r, tenant, customer_hash, live, blob)


def customer_from_reads(
    r: redis.Redis, tenant: str, customer_hash: str, live: str | None, blob: bytes | None
) -> dict | None:
    """``get_customer``'s answer from the live serving id and the customer's blob read together
    by the caller (the offer request's script reads them in its one call)."""
    if not isinstance(customer_hash, str) or not HASH_RE.match(customer_hash):
        return None
    if live is None:
        _live_cache.pop(tenant, None)
        return None
    _live_cache[tenant] = live
    return _customer(r, tenant, customer_hash, live, blob)


def _customer(
    r: redis.Redis, tenant: str, customer_hash: str, live: str, blob: bytes | None
) -> dict | None:
    if blob is None:
        return None
    meta = _meta(r, tenant, live)
    if meta is None:
        return None
    values = orjson.loads(blob)
    return {
        "customer_hash": customer_hash,
        "version": meta["version"],
        "zip": values[0],
        "attributes": dict(zip(meta["attributes"], values[2:], strict=False)),
        "holdings": [{"product_id": p, "quantity": q, "since": s} for p, q, s in values[1]],
    }
