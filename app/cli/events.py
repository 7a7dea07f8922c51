"""``offerwise events import``: bootstrap a tenant's event archive from its analytics history."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.output import emit, exit_if_rows_rejected, fail, store
from app.settings import load_settings
from clickstream.history_import import HistoryImportError, import_history
from store.artifacts import events_store
from store.tenants import get_tenant


@click.group()
def events() -> None:
    """Event history of a tenant."""


@events.command("import")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(tenant_name: str, path: Path) -> None:
    """Import PATH (CSV or Parquet: one collect event per row with its visitor and its time
    ``ts``, epoch milliseconds or ISO 8601) into the tenant's event archive.

    Rows are validated like collect events and deduplicated by (visitor, event id) against the
    archive and the file. Prints the report. Exit code 0 when every row was imported or was a
    duplicate, 3 when the good rows were imported and some were rejected (the report's errors
    give row, field and reason), 2 when the file could not be imported at all.
    """
    settings = load_settings()
    r = store()
    tenant = get_tenant(r, tenant_name)
    if tenant is None:
        fail(f"no tenant named {tenant_name!r}")
    try:
        report = import_history(r, events_store(settings), tenant, path)
    except HistoryImportError as err:
        fail(str(err))
    emit(report.to_dict())
    exit_if_rows_rejected(report.rejected)
