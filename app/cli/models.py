"""``offerwise models``: list versions, promote, roll back (provider staff)."""

from __future__ import annotations

import click

from app.cli.output import emit, fail, store
from models import registry


@click.group()
def models() -> None:
    """Model versions and the champion of a tenant."""


@models.command("list")
@click.option("--tenant", "tenant_name", required=True)
def list_(tenant_name: str) -> None:
    """Every version, newest first, with its holdout score and which one is champion."""
    emit(registry.list_versions(store(), tenant_name))


@models.command("promote")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("version")
def promote(tenant_name: str, version: str) -> None:
    """Make VERSION the champion (served by every worker within a request or two)."""
    try:
        emit(registry.promote(store(), tenant_name, version, "staff"))
    except registry.RegistryError as err:
        fail(str(err))


@models.command("rollback")
@click.option("--tenant", "tenant_name", required=True)
def rollback(tenant_name: str) -> None:
    """Go back to the previous champion."""
    try:
        emit(registry.rollback(store(), tenant_name))
    except registry.RegistryError as err:
        fail(str(err))
