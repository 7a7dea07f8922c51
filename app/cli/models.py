"""``offerwise models``: list versions, promote, roll back, retrain without the erased
(provider staff)."""

from __future__ import annotations

import click

from app.cli.output import emit, fail, store
from app.cli.train import _Bar
from app.settings import load_settings
from models import registry, retrain
from models.training import TrainingError, TrainingResult, comparison


@click.group()
def models() -> None:
    """Model versions and the champion of a tenant."""


@models.command("list")
@click.option("--tenant", "tenant_name", required=True)
def list_(tenant_name: str) -> None:
    """Every version, newest first, with its holdout score and which one is champion."""
    emit(registry.list_versions(store(), tenant_name))


@models.command("show")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("version", required=False)
def show(tenant_name: str, version: str | None) -> None:
    """The training report of VERSION (default: the champion): per product the served
    candidate and why, each candidate's cross-validation mean and sd (or validation AUC) and
    its holdout figures."""
    r = store()
    version = version or registry.champion(r, tenant_name)
    if version is None:
        fail(f"tenant {tenant_name!r} has no model yet")
    try:
        result = TrainingResult.load(registry.version_dir(load_settings(), tenant_name, version))
    except (OSError, ValueError) as err:
        fail(f"no readable model version {version!r} of {tenant_name!r}: {err}")
    emit({
        "tenant": tenant_name,
        "version": version,
        "champion": registry.champion(r, tenant_name) == version,
        "label_source": result.snapshot.get("label_source"),
        "timings": result.timings,
        # Whether anonymous visitors have a model of their own, or why not (they are then
        # scored by the customer model).
        "anonymous": (registry.get_version(r, tenant_name, version) or {}).get("anonymous"),
        "products": comparison(result),
    })  # fmt: skip


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


@models.command("delete")
@click.option("--tenant", "tenant_name", required=True)
@click.argument("version")
def delete(tenant_name: str, version: str) -> None:
    """Delete VERSION (not the champion): its registry entry, live samples and artifacts, for
    example a version superseded after an erasure."""
    try:
        registry.delete_version(store(), load_settings(), tenant_name, version)
    except registry.RegistryError as err:
        fail(str(err))
    emit({"tenant": tenant_name, "deleted": version})


@models.command("retrain-erased")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--products", default=None, help="Comma-separated product ids (default: catalog).")
@click.option(
    "--labels",
    type=click.Choice(["holdings", "purchases", "both"]),
    default=None,
    help="Label source (default: the champion's).",
)
@click.option(
    "--delete-superseded",
    is_flag=True,
    help="Also delete the replaced versions' registry entries and artifacts.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def retrain_erased(
    tenant_name: str,
    products: str | None,
    labels: str | None,
    delete_superseded: bool,
    quiet: bool,
) -> None:
    """Retrain without the erased: one new version on the current data replaces every version
    trained on a person since erased (erasure receipts list them; `models list` shows
    retrain_because). A champion among them is replaced whatever the holdout says."""
    settings = load_settings()
    wanted = [p for p in (products or "").split(",") if p.strip()] or None
    with _Bar(not quiet) as bar:
        try:
            out = retrain.retrain_erased(
                store(),
                settings,
                tenant_name,
                products=wanted,
                label_source=labels,
                progress=bar,
                delete_superseded=delete_superseded,
            )
        except TrainingError as err:
            bar.progress.stop()
            fail(str(err))
    emit(out)
