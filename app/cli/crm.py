"""``offerwise crm``: import a tenant's CRM extract, list its versions, roll back, look one up."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.output import emit, exit_if_rows_rejected, fail, store
from app.settings import load_settings
from enrichment import crm as crm_domain
from enrichment.crm.coltypes import parse_types_option
from store.tenants import get_tenant

_DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def crm() -> None:
    """Import and manage tenants' CRM extracts (customers and holdings)."""


@crm.command("import")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("customers", type=_FILE)
@click.option("--holdings", type=_FILE, help="Long file: customer_id,product_id[,quantity][,date].")
@click.option("--id-column", default="customer_id", show_default=True)
@click.option(
    "--zip-column",
    default=None,
    help="Default: zip, zipcode, zip_code, postal_code or postcode if present.",
)
@click.option(
    "--country",
    default="US",
    show_default=True,
    help="How ZIP codes are normalised (US: 5 digits).",
)
@click.option(
    "--types",
    "types_",
    default=None,
    help="Type overrides: col=numeric|categorical|text|date[:ymd|mdy|dmy]|boolean|skip,...",
)
@click.option(
    "--derive",
    multiple=True,
    help='Derived feature, e.g. "income_per_age=income/age" (repeatable).',
)
@click.option(
    "--delimiter", default=None, help="Field delimiter (default: sniffed among , ; tab |)."
)
@click.option(
    "--encoding",
    default=None,
    help="Text encoding (default: detected; UTF-8, UTF-16, Windows-1252).",
)
@click.option(
    "--holdings-id-column",
    default=None,
    help="Customer id column of the holdings file (default: --id-column).",
)
@click.option("--max-reject-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Refuse the file when a larger share of rows is rejected.")  # fmt: skip
@click.option("--keep-versions", type=click.IntRange(min=2), default=3, show_default=True)
def import_(
    tenant_name: str,
    customers: Path,
    holdings: Path | None,
    id_column: str,
    zip_column: str | None,
    country: str,
    types_: str | None,
    derive: tuple[str, ...],
    delimiter: str | None,
    encoding: str | None,
    holdings_id_column: str | None,
    max_reject_rate: float,
    keep_versions: int,
) -> None:
    """Import CUSTOMERS (CSV or Parquet) as a new version; it goes live when complete.

    Prints the report (rows read, imported, rejected; errors with row, column and reason;
    inferred column types). Exit code 0 when every row was imported, 3 when the version was
    imported but rows of the customers or holdings file were rejected (the report's errors say
    which), 1 when the file was refused (the previous version stays live), 2 on a usage error.
    """
    r = store()
    try:
        options = crm_domain.ImportOptions(
            id_column=id_column,
            zip_column=zip_column,
            country=country,
            types=parse_types_option(types_),
            derive=list(derive),
            delimiter=_DELIMITERS.get((delimiter or "").lower(), delimiter),
            encoding=encoding,
            holdings_id_column=holdings_id_column,
            max_reject_rate=max_reject_rate,
            keep_versions=keep_versions,
        )
        report = crm_domain.import_crm(
            r, tenant_name, customers, holdings, options=options, settings=load_settings()
        )
    except crm_domain.CrmImportError as err:
        emit(err.report)
        fail(str(err), code=1)
    except crm_domain.CrmError as err:
        fail(str(err))
    emit(report)
    exit_if_rows_rejected(
        report["rows_rejected"] + (report["holdings"] or {}).get("rows_rejected", 0)
    )


@crm.command("versions")
@click.option("--tenant", "tenant_name", required=True)
def versions(tenant_name: str) -> None:
    """Kept CRM versions, newest first, and which one is live."""
    r = store()
    if get_tenant(r, tenant_name) is None:
        fail(f"no tenant named {tenant_name!r}")
    try:
        emit(crm_domain.versions_info(r, tenant_name, load_settings()))
    except crm_domain.CrmError as err:
        fail(str(err))


@crm.command("rollback")
@click.option("--tenant", "tenant_name", required=True)
def rollback(tenant_name: str) -> None:
    """Make the newest kept version older than the live one live again."""
    try:
        emit(crm_domain.rollback(store(), tenant_name, load_settings()))
    except crm_domain.CrmError as err:
        fail(str(err))


@crm.command("activate")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--version", "version", required=True, help="A kept version, e.g. v3.")
def activate(tenant_name: str, version: str) -> None:
    """Make a kept version live (e.g. roll forward again, or restore serving after a Redis loss)."""
    try:
        emit(crm_domain.activate(store(), tenant_name, version, load_settings()))
    except crm_domain.CrmError as err:
        fail(str(err))


@crm.command("show")
@click.option("--tenant", "tenant_name", required=True)
@click.option(
    "--customer-id", default=None, help="The raw id as in the CRM (hashed here, never stored)."
)
@click.option("--customer-hash", default=None, help="The keyed hash of the id.")
def show(tenant_name: str, customer_id: str | None, customer_hash: str | None) -> None:
    """The live CRM profile of one customer (attributes, ZIP, holdings)."""
    r = store()
    tenant = get_tenant(r, tenant_name)
    if tenant is None:
        fail(f"no tenant named {tenant_name!r}")
    if bool(customer_id) == bool(customer_hash):
        fail("give exactly one of --customer-id or --customer-hash")
    h = tenant.hash_customer_id(customer_id) if customer_id else (customer_hash or "").lower()
    profile = crm_domain.get_customer(r, tenant_name, h)
    if profile is None:
        fail(f"no customer {h} in the live CRM version of {tenant_name!r}", code=1)
    emit(profile)
