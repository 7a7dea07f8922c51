"""``offerwise tenant``: create, list, update tenants and rotate their keys."""

from __future__ import annotations

import click

from app.cli.output import emit, fail, store
from store import tenants


@click.group()
def tenant() -> None:
    """Manage tenants and their API keys."""


@tenant.command("create")
@click.argument("name")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    help="Allowed browser origin, e.g. https://shop.example (repeatable).",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=None,
    help="Requests per second per site key.",
)
def create(name: str, origins: tuple[str, ...], rate_limit: int | None) -> None:
    """Create a tenant; prints its keys (shown only this once)."""
    try:
        emit(tenants.create_tenant(store(), name, list(origins), rate_limit))
    except tenants.TenantError as err:
        fail(str(err))
    if not origins:
        # Browser calls always send an Origin, and a tenant with none allowed refuses them all.
        click.echo(
            f"warning: tenant {name!r} has no allowed origin, so every browser call with its "
            f"site key will be refused (403); allow the shop's with: "
            f"offerwise tenant update {name} --origin https://...",
            err=True,
        )


@tenant.command("list")
def list_() -> None:
    """List tenants (keys are never shown: only their hashes are stored)."""
    emit([t.public() for t in tenants.list_tenants(store())])


@tenant.command("update")
@click.argument("name")
@click.option(
    "--origin", "origins", multiple=True, help="Replace the allowed origins (repeatable)."
)
@click.option("--rate-limit", type=click.IntRange(min=1), default=None)
@click.option(
    "--holdout-share",
    type=click.FloatRange(0, tenants.MAX_HOLDOUT_SHARE),
    default=None,
    help="Share of people served popularity only, to measure personalization (default 0.05).",
)
def update(
    name: str, origins: tuple[str, ...], rate_limit: int | None, holdout_share: float | None
) -> None:
    """Change a tenant's allowed origins, rate limit or holdout share."""
    try:
        emit(
            tenants.update_tenant(
                store(), name, list(origins) if origins else None, rate_limit, holdout_share
            ).public()
        )
    except tenants.TenantError as err:
        fail(str(err))


@tenant.command("rotate-keys")
@click.argument("name")
def rotate(name: str) -> None:
    """Issue new site and admin keys; the old ones stop working."""
    try:
        emit(tenants.rotate_keys(store(), name))
    except tenants.TenantError as err:
        fail(str(err))
