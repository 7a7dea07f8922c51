"""The live CRM version's tables, for offline work on every customer (contact lists), and the
hashing of a tenant's raw ids the way the import hashes them.

Serving reads one customer's profile from Redis; a contact list needs every customer, which
the version's Parquet files hold (customer hash, ZIP and attributes as imported; holdings by
customer hash). Customers erased since the import are left out, as ``load_serving`` leaves
them out of the serving profiles.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from enrichment.crm.live import erased_hashes
from enrichment.crm.serving import current_version
from enrichment.crm.validate import hash_ids, id_text, make_hasher
from enrichment.crm.versions import CUSTOMERS, HOLDINGS, Version, get_version
from store.config import Settings
from store.tenants import Tenant

READ_ROWS = 64 * 1024


@dataclass(frozen=True)
class LiveTables:
    """The live version of a tenant's CRM data on disk."""

    version: str
    types: dict[str, str]  # attribute -> CRM column type, as the manifest says
    _folder: Version
    _erased: pa.Array | None

    @property
    def attributes(self) -> list[str]:
        return list(self.types)

    def customer_batches(
        self, columns: Sequence[str] | None = None, rows: int = READ_ROWS
    ) -> Iterator[pa.Table]:
        """Customers in tables of at most ``rows`` rows: ``customer_hash`` first, then the
        ``columns`` asked for (default: all) that the version has."""
        parquet = pq.ParquetFile(self._folder.path / CUSTOMERS)
        have = set(parquet.schema_arrow.names)
        wanted = ["customer_hash"] + [
            c for c in (columns if columns is not None else parquet.schema_arrow.names)
            if c in have and c != "customer_hash"
        ]  # fmt: skip
        for batch in parquet.iter_batches(batch_size=rows, columns=wanted):
            yield self._kept(pa.Table.from_batches([batch]))

    def holdings(self) -> pa.Table | None:
        """``customer_hash, product_id, quantity[, since]`` rows, or None without a holdings
        file."""
        path = self._folder.path / HOLDINGS
        return self._kept(pq.read_table(path)) if path.is_file() else None

    def _kept(self, table: pa.Table) -> pa.Table:
        if self._erased is None:
            return table
        return table.filter(pc.invert(pc.is_in(table["customer_hash"], value_set=self._erased)))


def live_tables(r: redis.Redis, settings: Settings, tenant: str) -> LiveTables | None:
    """The live CRM version's tables, or None when the tenant has none live. Raises CrmError
    when the live version is not on disk."""
    name = current_version(r, tenant)
    if name is None:
        return None
    version = get_version(settings, tenant, name)
    erased = erased_hashes(r, tenant)
    return LiveTables(
        version=name,
        types=dict(version.manifest().get("types") or {}),
        _folder=version,
        _erased=pa.array(sorted(erased), pa.string()) if erased else None,
    )


def hash_customer_ids(tenant: Tenant, ids: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """The keyed hashes of a column of raw customer ids, as the import computes them (trimmed
    text, whole floats read as integers); None where the id is missing."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    return hash_ids(id_text(ids), make_hasher(tenant))
