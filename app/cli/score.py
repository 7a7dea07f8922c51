"""``offerwise score``: batch scores for offline channels (mail, call lists)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import Progress

from app.cli.output import emit, fail, store
from app.settings import load_settings
from models import registry
from models.batch import BatchError, score_file
from models.bundle import load_bundle


@click.command()
@click.option("--tenant", "tenant_name", required=True)
@click.argument("customers", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--holdings", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--id-column", default="customer_id", show_default=True)
@click.option("--version", default=None, help="Model version (default: the champion).")
def score(
    tenant_name: str,
    customers: Path,
    holdings: Path | None,
    out: Path,
    id_column: str,
    version: str | None,
) -> None:
    """Score every customer of CUSTOMERS (CSV or Parquet) for every product, same models as real time."""
    settings = load_settings()
    version = version or registry.champion(store(), tenant_name)
    if version is None:
        fail(
            f"tenant {tenant_name!r} has no champion model: run `offerwise train --tenant {tenant_name}` first"
        )
    try:
        bundle = load_bundle(settings, tenant_name, version)
    except (OSError, ValueError) as err:
        fail(f"model {version}: {err}")
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("scoring", total=None)
            summary = score_file(
                settings,
                bundle,
                customers,
                out,
                holdings,
                id_column=id_column,
                progress=lambda k: bar.advance(task, k),
            )
    except BatchError as err:
        fail(str(err))
    emit(summary)
