"""``offerwise catalog import``: load a tenant's product catalog from CSV or JSON."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.output import emit, exit_if_rows_rejected, fail, store
from clickstream import catalog as catalog_domain
from store.tenants import get_tenant


@click.group()
def catalog() -> None:
    """Manage product catalogs."""


@catalog.command("import")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(tenant_name: str, path: Path) -> None:
    """Replace the tenant's catalog with PATH (CSV or JSON); bad rows are reported.

    Prints the report. Exit code 0 when every row was imported, 3 when the good rows were
    imported and some were rejected (the report's errors say which), 2 when nothing was.
    """
    r = store()
    if get_tenant(r, tenant_name) is None:
        fail(f"no tenant named {tenant_name!r}")
    content_type = "application/json" if path.suffix.lower() == ".json" else "text/csv"
    try:
        report = catalog_domain.parse_upload(path.read_bytes(), content_type)
        version = catalog_domain.replace_catalog(r, tenant_name, report.products)
    except catalog_domain.CatalogError as err:
        fail(f"{path.name}: {err}")
    emit(report.as_dict(version))
    exit_if_rows_rejected(report.error_count)
