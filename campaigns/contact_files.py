"""The files around a contact list: the tenant's own customers extract (raw ids, contact columns,
opt-out flags), joined to CRM customers by the keyed hash of its ids, and the list's CSV.

Raw CRM ids are never stored, so a list carries customer hashes unless the tenant gives its
extract: its ids are hashed with the tenant key as the CRM import hashes them, and the list
then carries the extract's ids and contact columns (e-mail, address). Every cell written goes
through ``store.csv_cells``: ids, contact values and campaign names come from tenants' uploads.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pyarrow as pa

from campaigns.assignment import TREATED
from campaigns.definitions import Campaign, CampaignError
from enrichment.crm import hash_customer_ids
from models.batch import BatchError, read_batches
from store.csv_cells import safe_row
from store.tenants import Tenant

# Looked for among the CRM attributes and the extract's columns when no column is named.
OPT_OUT_COLUMNS = ("opt_out", "opted_out", "email_opt_out", "do_not_contact")
TRUTHY = frozenset({"1", "true", "yes", "y"})


class ContactListError(CampaignError):
    """A list that cannot be exported, or a file that cannot be read, for a reason the admin
    can fix; the message says which."""


def truthy(value: object) -> bool:
    """An opt-out flag as extracts write it: true, 1, yes or y (any case), or a true boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    return isinstance(value, str) and value.strip().casefold() in TRUTHY


def flag_column(named: str | None, columns: Iterable[str]) -> str | None:
    """The opt-out column among ``columns``: the one named, else the first default name."""
    have = set(columns)
    return next((c for c in ((named,) if named else OPT_OUT_COLUMNS) if c in have), None)


@dataclass
class Extract:
    """The tenant's customers file by customer hash: (raw id, contact values, opted out)."""

    rows: dict[str, tuple[object, tuple, bool]] = field(default_factory=dict)
    opt_out_column: str | None = None
    rows_without_id: int = 0


def read_extract(
    tenant: Tenant,
    path: Path,
    id_column: str,
    contact_columns: tuple[str, ...],
    opt_out_column: str | None,
) -> Extract:
    """Read ``path`` (CSV or Parquet, streamed); the first row of an id wins."""
    out = Extract()
    first = True
    try:
        for batch in read_batches(path):
            table = pa.Table.from_batches([batch])
            if first:
                first = False
                missing = [c for c in (id_column, *contact_columns) if c not in table.column_names]
                if missing:
                    raise ContactListError(
                        f"customers: {path.name} has no column {missing[0]!r}; found "
                        f"{', '.join(table.column_names)}"
                    )
                out.opt_out_column = flag_column(opt_out_column, table.column_names)
            raw = table.column(id_column).to_pylist()
            hashes = hash_customer_ids(tenant, table.column(id_column))
            contact = [table.column(c).to_pylist() for c in contact_columns]
            flag = out.opt_out_column
            flags = table.column(flag).to_pylist() if flag else [None] * table.num_rows
            for i, h in enumerate(hashes):
                if h is None:
                    out.rows_without_id += 1
                elif h not in out.rows:
                    out.rows[h] = (raw[i], tuple(v[i] for v in contact), truthy(flags[i]))
    except (BatchError, pa.ArrowInvalid, OSError) as err:
        raise ContactListError(f"customers: {path.name} cannot be read ({err})") from None
    return out


@dataclass
class Contact:
    customer_hash: str
    score: float
    decile: int | None
    group: str = TREATED
    customer_id: object = None  # the raw id, from the tenant's extract
    contact: tuple = ()  # the contact columns' values, from the tenant's extract


@dataclass
class ContactList:
    campaign: Campaign
    contacts: list[Contact]  # best first, both groups
    with_ids: bool  # the rows carry the extract's ids (else customer hashes)
    contact_columns: tuple[str, ...]
    summary: dict = field(default_factory=dict)

    def group(self, name: str) -> list[Contact]:
        return [c for c in self.contacts if c.group == name]


def header(contacts: ContactList) -> list[str]:
    first = "customer_id" if contacts.with_ids else "customer_hash"
    return [first, "score", "decile", "group", "campaign", *contacts.contact_columns]


def write_contacts(contacts: ContactList, rows: Iterable[Contact], fh: IO[str]) -> int:
    """Write ``rows`` as CSV, header first, every cell spreadsheet-safe; returns the rows."""
    writer = csv.writer(fh)
    writer.writerow(safe_row(header(contacts)))
    n = 0
    for c in rows:
        first = c.customer_id if contacts.with_ids else c.customer_hash
        writer.writerow(
            safe_row([first, c.score, c.decile, c.group, contacts.campaign.name, *c.contact])
        )
        n += 1
    return n
