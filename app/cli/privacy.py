"""``offerwise erase``: remove a customer or visitor everywhere."""

from __future__ import annotations

import click

from app.cli.output import emit, fail, store
from app.settings import load_settings
from models.erasure import ErasureError, erase_person
from store.tenants import get_tenant


@click.command()
@click.option("--tenant", "tenant_name", required=True)
@click.option("--customer-id", default=None, help="Raw CRM customer id (hashed before use).")
@click.option("--visitor-id", default=None)
def erase(tenant_name: str, customer_id: str | None, visitor_id: str | None) -> None:
    """Erase a person from live store, CRM versions and event archive; prints the receipt."""
    r = store()
    tenant = get_tenant(r, tenant_name)
    if tenant is None:
        fail(f"no tenant named {tenant_name!r}")
    try:
        emit(erase_person(r, load_settings(), tenant, customer_id, visitor_id))
    except ErasureError as err:
        fail(str(err))
