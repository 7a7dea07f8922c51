"""``offerwise train`` and ``offerwise evaluate``: per-product propensity models of a tenant."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.output import emit, fail, store
from app.settings import load_settings
from models import registry
from models.pipeline import train_and_register
from models.training import (
    TrainingError,
    TrainingResult,
    TrainParams,
    comparison,
    evaluate_result,
    latest_result_dir,
    save_result,
    train_tenant,
    write_gains_chart,
)


class _Bar:
    """A rich progress bar on stderr (stdout carries the JSON)."""

    def __init__(self, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage.startswith("training"):
            group = "training"
        elif stage.startswith(("evaluating", "registering", "done")):
            group = "evaluating and registering"
        else:
            group = "preparing data"
        if group not in self.tasks:
            self.tasks[group] = self.progress.add_task(group, total=total)
        self.progress.update(self.tasks[group], completed=done, total=total, description=stage)


def _params(**kwargs: object) -> TrainParams:
    params = TrainParams()
    for key, value in kwargs.items():
        if value is not None:
            setattr(params, key, value)
    return params


def _train(tenant: str, products: str | None, labels: str, params: TrainParams, quiet: bool):
    settings = load_settings()
    r = store()
    wanted = [p for p in (products or "").split(",") if p.strip()] or None
    with _Bar(not quiet) as bar:
        try:
            result = train_tenant(r, settings, tenant, wanted, labels, params=params, progress=bar)
        except TrainingError as err:
            bar.progress.stop()
            fail(str(err))
    folder = save_result(settings, result)
    return r, settings, result, folder


@click.command("train")
@click.option("--tenant", required=True, help="Tenant whose models to train.")
@click.option("--products", default=None, help="Comma-separated product ids (default: catalog).")
@click.option(
    "--labels",
    type=click.Choice(["holdings", "purchases", "both"]),
    default="holdings",
    show_default=True,
    help="Positive = holds the product (CRM), bought it (events, last --label-days), or either.",
)
@click.option(
    "--label-days", type=click.IntRange(min=1), default=None, help="Purchase label window."
)
@click.option("--max-rounds", type=click.IntRange(min=1), default=None, help="XGBoost rounds cap.")
@click.option("--max-train-rows", type=click.IntRange(min=1000), default=None,
              help="Per product; above it, all positives plus sampled negatives.")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--no-promote", is_flag=True, help="Register the version but never promote it automatically."
)
@click.option("--dask-scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Train large tenants on this Dask cluster (default: OFFERWISE_DASK_SCHEDULER).")  # fmt: skip
@click.option("--dask-min-rows", type=click.IntRange(min=0), default=None,
              help="Customers from which a tenant trains on the cluster (default: "
                   "OFFERWISE_DASK_MIN_ROWS, 1,000,000; 0: always).")  # fmt: skip
def train(
    tenant: str,
    products: str | None,
    labels: str,
    label_days: int | None,
    max_rounds: int | None,
    max_train_rows: int | None,
    quiet: bool,
    no_promote: bool,
    dask_scheduler: str | None,
    dask_min_rows: int | None,
) -> None:
    """Train one model per product (XGBoost and baselines); print the JSON summary.

    The result (models, calibration, scorer, metrics) is saved under
    <data dir>/artifacts/models/<tenant>/<version>/ and registered; it becomes the champion
    when it beats the current one on the same holdout (or is the tenant's first).
    """
    params = _params(label_days=label_days, max_rounds=max_rounds, max_train_rows=max_train_rows)
    settings = load_settings()
    if dask_scheduler is not None or dask_min_rows is not None:
        settings = dataclasses.replace(
            settings,
            dask_scheduler=dask_scheduler or settings.dask_scheduler,
            dask_min_rows=settings.dask_min_rows if dask_min_rows is None else dask_min_rows,
        )
    wanted = [p for p in (products or "").split(",") if p.strip()] or None
    with _Bar(not quiet) as bar:
        try:
            out = train_and_register(
                store(),
                settings,
                tenant,
                wanted,
                labels,
                params=params,
                progress=bar,
                auto_promote=not no_promote,
            )
        except TrainingError as err:
            bar.progress.stop()
            fail(str(err))
    summary = out["summary"]
    summary["registry"] = out["registry"]
    summary["anonymous"] = out["anonymous"]
    summary["path"] = str(registry.version_dir(settings, tenant, out["version"]))
    emit(summary)


@click.command("evaluate")
@click.option("--tenant", required=True)
@click.option("--version", "version", default=None, help="Training version (default: latest).")
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the gains chart (default: in the version folder).")  # fmt: skip
@click.option("--labels", type=click.Choice(["holdings", "purchases", "both"]), default="holdings",
              show_default=True, help="Label source if a first training has to run.")  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(tenant: str, version: str | None, png: Path | None, labels: str, quiet: bool) -> None:
    """Holdout figures of XGBoost and the baselines side by side, and the gains chart.

    Re-scores the holdout of the latest training result (or --version) from its own data
    snapshot; trains first when the tenant has no result yet.
    """
    settings = load_settings()
    r = store()
    if version is not None:
        try:
            folder = registry.version_dir(settings, tenant, version)
        except ValueError as err:  # not a valid version name
            fail(str(err))
        if not (folder / "result.json").is_file():
            fail(f"tenant {tenant!r} has no training result {version!r}")
    else:
        folder = latest_result_dir(settings, tenant)
    trained_now = folder is None
    if folder is None:
        r, settings, result, folder = _train(tenant, None, labels, TrainParams(), quiet)
    else:
        try:
            result = TrainingResult.load(folder)
            with _Bar(not quiet) as bar:
                evaluate_result(r, settings, result, progress=bar)
        except TrainingError as err:
            fail(str(err))
    # The version is published already: its files are replaced through the store, atomically.
    payload = json.dumps(result.evaluation).encode()
    registry.write_version_file(settings, tenant, result.version, "evaluation.json", payload)
    if png is not None:
        chart = write_gains_chart(result, png)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            drawn = write_gains_chart(result, Path(tmp) / "gains.png")
            registry.write_version_file(
                settings, tenant, result.version, "gains.png", drawn.read_bytes()
            )
        chart = registry.version_dir(settings, tenant, result.version) / "gains.png"
    emit(
        {
            "tenant": tenant,
            "version": result.version,
            "trained_now": trained_now,
            "label_source": result.snapshot.get("label_source"),
            "holdout": {"rule": "customer hash", "split": result.snapshot.get("split")},
            "products": comparison(result),
            "gains_chart": str(chart),
            "path": str(folder),
        }
    )
