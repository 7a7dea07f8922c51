"""Whom a model version was trained on, so that an erasure names only the versions that saw
the person, and which versions must be retrained because of an erasure.

Each version keeps ``lineage.bloom`` beside its artifacts: a Bloom filter over keyed hashes of
everyone in the data its training read, that is every customer of the CRM version (customers
and holdings files) and every visitor and customer of the event archive. The key is derived
from the tenant's id secret, so the file answers "was this person in it?" only to someone who
holds that secret, and it holds no identifier itself.

A Bloom filter has no false negatives: a person who was in the data is always found. It has
false positives at a rate fixed when it is sized (``FALSE_POSITIVE_RATE``, 1 in 10,000 per
lookup): now and then a version is listed for retraining that did not see the person, which
costs a retraining, never a missed erasure. Size: about 19.2 bits (2.4 bytes) per person, so
a million customers and visitors take 2.4 MB per version; 13 hash positions per lookup.

Erasure during training: the filter is built after training from the data as it is then, so a
person erased while the version trained may have been read by training and be missing from
the filter. Such a version is flagged for retraining whatever its filter says: the pipeline
writes the filter, registers the version, then looks for erasures that finished since training
started or are still running (``erasures_during``); an erasure marks itself running before it
reads the registered versions. Whichever of the two comes second sees the other.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow.parquet as pq
import redis

from clickstream.archiver import read_archive
from enrichment.crm.errors import CrmError
from enrichment.crm.versions import CUSTOMERS, HOLDINGS, get_version
from store import keys
from store.artifacts import events_store
from store.config import Settings
from store.redis_client import reply_text
from store.tenants import Tenant

LINEAGE_FILE = "lineage.bloom"
FALSE_POSITIVE_RATE = 1e-4
MAGIC = b"OWBLOOM1"
# magic, bits, hash positions, items, the false positive rate it was sized for
HEADER = struct.Struct("<8sQQQd")
HEADER_BYTES = 64  # the bits start here (room for more header fields)
CHUNK = 200_000  # items hashed into positions at a time (memory: CHUNK x k x 8 bytes)
# An erasure still marked running after this long died half-way (its process was killed); it
# no longer flags versions trained since.
ERASURE_MAX_S = 3600.0


def _key(tenant: Tenant) -> bytes:
    return hmac.new(tenant.id_secret, b"offerwise model lineage", hashlib.sha256).digest()


def customer_item(customer_hash: str) -> bytes:
    return b"c:" + customer_hash.encode()


def visitor_item(visitor_id: str) -> bytes:
    return b"v:" + visitor_id.encode()


def _digests(items: Iterable[bytes], key: bytes) -> np.ndarray:
    """(n, 2) uint64: two independent 64-bit hashes of each item (keyed BLAKE2b)."""
    keyed = hashlib.blake2b(key=key, digest_size=16)
    out = []
    for item in items:
        h = keyed.copy()  # a third cheaper than keying a new hasher per item
        h.update(item)
        out.append(h.digest())
    return np.frombuffer(b"".join(out), dtype="<u8").reshape(-1, 2)


def sizes(n: int, rate: float = FALSE_POSITIVE_RATE) -> tuple[int, int]:
    """(bits, hash positions) of the smallest filter with false positive rate ``rate`` at
    ``n`` items: m = -n ln p / (ln 2)^2, k = (m / n) ln 2."""
    n = max(1, n)
    m = max(64, math.ceil(-n * math.log(rate) / math.log(2) ** 2))
    m = (m + 7) // 8 * 8
    return m, max(1, round(m / n * math.log(2)))


def _positions(digests: np.ndarray, m: int, k: int) -> np.ndarray:
    """(n, k) bit positions by double hashing (Kirsch and Mitzenmacher): h1 + i h2 mod m."""
    h1, h2 = digests[:, :1], digests[:, 1:] | np.uint64(1)
    with np.errstate(over="ignore"):  # wraps modulo 2**64 on purpose
        return (h1 + np.arange(k, dtype=np.uint64) * h2) % np.uint64(m)


@dataclass(frozen=True)
class BloomFilter:
    bits: np.ndarray  # uint8, little-endian bit order, m / 8 bytes
    m: int
    k: int
    n: int
    rate: float

    @classmethod
    def build(
        cls, items: list[bytes], key: bytes, rate: float = FALSE_POSITIVE_RATE
    ) -> BloomFilter:
        """A filter sized for ``items``, which must be distinct (a repeat only wastes room)."""
        m, k = sizes(len(items), rate)
        on = np.zeros(m, dtype=bool)
        for start in range(0, len(items), CHUNK):
            on[_positions(_digests(items[start : start + CHUNK], key), m, k).ravel()] = True
        return cls(np.packbits(on, bitorder="little"), m, k, len(items), rate)

    def contains(self, item: bytes, key: bytes) -> bool:
        return bool(self.contains_many([item], key)[0])

    def contains_many(self, items: list[bytes], key: bytes) -> np.ndarray:
        """One bool per item: True when all its k bits are set."""
        pos = _positions(_digests(items, key), self.m, self.k)
        found = self.bits[pos >> np.uint64(3)] >> (pos & np.uint64(7)) & 1
        return np.all(found == 1, axis=1)

    def to_bytes(self) -> bytes:
        header = HEADER.pack(MAGIC, self.m, self.k, self.n, self.rate)
        return header.ljust(HEADER_BYTES, b"\0") + self.bits.tobytes()

    @classmethod
    def read(cls, path: Path) -> BloomFilter:
        """Memory-mapped: a lookup reads k bytes of the file, not the file."""
        with path.open("rb") as fh:
            magic, m, k, n, rate = HEADER.unpack(fh.read(HEADER.size))
        if magic != MAGIC:
            raise ValueError(f"{path}: not a lineage filter")
        bits = np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_BYTES, shape=(m // 8,))
        return cls(np.asarray(bits), m, k, n, rate)


# --- recording a version's lineage ------------------------------------------------------------


def training_people(settings: Settings, tenant: str, crm_version: str | None) -> dict[str, set]:
    """Everyone in the data a training run of ``tenant`` reads: the customers of its CRM
    version and the visitors and customers of the event archive."""
    customers: set[str] = set()
    if crm_version:
        version = get_version(settings, tenant, crm_version)
        for name in (CUSTOMERS, HOLDINGS):
            path = version.path / name
            if path.is_file() and "customer_hash" in pq.read_schema(path).names:
                column = pq.read_table(path, columns=["customer_hash"]).column(0)
                customers.update(v for v in column.to_pylist() if v)
    events = read_archive(events_store(settings), tenant, columns=["visitor", "customer"])
    visitors = {v for v in events.column("visitor").to_pylist() if v}
    customers.update(v for v in events.column("customer").to_pylist() if v)
    return {"customers": customers, "visitors": visitors}


def record(
    settings: Settings,
    tenant: Tenant,
    crm_version: str | None,
    write: Callable[[str, bytes], None],
) -> dict:
    """Write the version's lineage.bloom (by ``write(name, data)``, into the published version)
    for a version trained on ``crm_version`` and the archive; returns what the registry keeps
    of it.

    When the data cannot be read again (the CRM version was pruned meanwhile) no filter is
    written: a partial one would miss people, and a version without lineage is listed for
    every erasure instead."""
    started = time.perf_counter()
    try:
        people = training_people(settings, tenant.name, crm_version)
    except (CrmError, OSError) as err:
        return {"recorded": False, "why": f"training data not readable again: {err}"}
    items = [customer_item(c) for c in people["customers"]]
    items += [visitor_item(v) for v in people["visitors"]]
    bloom = BloomFilter.build(items, _key(tenant))
    write(LINEAGE_FILE, bloom.to_bytes())
    return {
        "recorded": True,
        "customers": len(people["customers"]),
        "visitors": len(people["visitors"]),
        "filter_bytes": HEADER_BYTES + bloom.m // 8,
        "hash_positions": bloom.k,
        "false_positive_rate": bloom.rate,
        "seconds": round(time.perf_counter() - started, 3),
    }


# --- reading it at erasure ---------------------------------------------------------------------


def saw(
    tenant: Tenant, folder: Path, customer_hash: str | None, visitors: Iterable[str]
) -> bool | None:
    """Whether the version in ``folder`` was trained on this person (True may be a false
    positive, False never misses); None when the version has no lineage (trained before
    lineage was recorded, or its files are gone)."""
    try:
        bloom = BloomFilter.read(folder / LINEAGE_FILE)
    except (OSError, ValueError):
        return None
    items = [customer_item(customer_hash)] if customer_hash else []
    items += [visitor_item(v) for v in visitors]
    return bool(items) and bool(bloom.contains_many(items, _key(tenant)).any())


def flag_for_retraining(r: redis.Redis, tenant: str, versions: Iterable[str], why: str) -> None:
    """Mark versions as trained on people since erased (the first reason given is kept)."""
    pipe = r.pipeline(transaction=False)
    for version in versions:
        pipe.hsetnx(keys.models_to_retrain(tenant), version, why)
    pipe.execute()


def flagged(r: redis.Redis, tenant: str) -> dict[str, str]:
    """Version -> why it must be retrained."""
    raw = r.hgetall(keys.models_to_retrain(tenant))
    return {reply_text(k): reply_text(v) for k, v in raw.items()}


def unflag(r: redis.Redis, tenant: str, versions: Iterable[str]) -> None:
    wanted = list(versions)
    if wanted:
        r.hdel(keys.models_to_retrain(tenant), *wanted)


def erasure_started(r: redis.Redis, tenant: str, receipt_id: str, now: float) -> None:
    r.zadd(keys.erasures_running(tenant), {receipt_id: now})


def erasure_finished(r: redis.Redis, tenant: str, receipt_id: str) -> None:
    r.zrem(keys.erasures_running(tenant), receipt_id)


def erasures_during(
    r: redis.Redis, tenant: str, since: float, receipts: list[dict], now: float | None = None
) -> list[str]:
    """Receipt ids of erasures that finished after ``since`` (newest receipts first, as
    stored) or are running now: a training that started at ``since`` may have read people
    they erased."""
    now = time.time() if now is None else now
    running = r.zrangebyscore(keys.erasures_running(tenant), now - ERASURE_MAX_S, "+inf")
    found = [reply_text(cast(bytes, x)) for x in running]  # members only: no scores asked
    for receipt in receipts:
        if receipt.get("erased_at", 0) < since:
            break
        found.append(receipt["receipt_id"])
    return found
