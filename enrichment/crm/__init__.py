"""CRM import: tenant customer extracts and holdings as versioned Parquet plus Redis serving profiles.

Public API (the CLI and the admin API call only these):

- ``import_crm(r, tenant, customers, holdings=None, *, options=ImportOptions(...))`` -> report
- ``get_customer(r, tenant, customer_hash)`` -> live profile or None; ``current_version(r, tenant)``
- ``versions_info``, ``rollback``, ``activate``: version management
- ``erase_customer(r, settings, tenant, customer_hash)`` / ``erase_customers``: erasure
- ``live_tables(r, settings, tenant)`` -> the live version's customers and holdings on disk (for
  offline work on every customer); ``hash_customer_ids(tenant, ids)``: raw ids hashed as imported
"""

from enrichment.crm.erase import erase_customer, erase_customers
from enrichment.crm.errors import CrmBusy, CrmError, CrmImportError, CrmNothingToRollBack
from enrichment.crm.importer import ImportOptions, import_crm
from enrichment.crm.live import activate, rollback, versions_info
from enrichment.crm.serving import current_version, customer_from_reads, get_customer
from enrichment.crm.tables import LiveTables, hash_customer_ids, live_tables

__all__ = [
    "CrmBusy",
    "CrmError",
    "CrmImportError",
    "CrmNothingToRollBack",
    "ImportOptions",
    "LiveTables",
    "activate",
    "current_version",
    "customer_from_reads",
    "erase_customer",
    "erase_customers",
    "get_customer",
    "hash_customer_ids",
    "import_crm",
    "live_tables",
    "rollback",
    "versions_info",
]
