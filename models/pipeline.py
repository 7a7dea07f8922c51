"""Train, save, compare with the champion on the same holdout, register: one call for the CLI,
the staff API and the background worker alike."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from models import anonymous, drift, lineage, registry
from models.bundle import SCORE_CUTS_FILE
from models.erasure import list_receipts
from models.evaluation import evaluate_scores
from models.training import (
    Dataset,
    ProgressFn,
    TrainingEngine,
    TrainingError,
    TrainingResult,
    TrainParams,
    distributed,
    prepare,
    save_result,
    train_tenant,
)
from store.config import Settings
from store.tenants import get_tenant


def _mean_auc(aucs: list[float | None]) -> float | None:
    vals = [a for a in aucs if a is not None]
    return float(np.mean(vals)) if vals else None


def snapshot_data(
    r: redis.Redis,
    settings: Settings,
    model: TrainingResult,
    snapshot: dict,
    products: list[str],
    engine: TrainingEngine | None = None,
) -> Dataset | None:
    """The rows of ``snapshot`` as ``model``'s features, for the products its scorer serves
    among ``products``; None when it serves none of them. ``engine``: where the archive is
    read (a Dask cluster for a large tenant)."""
    params = TrainParams(
        **{k: v for k, v in model.params.items() if k in TrainParams.__dataclass_fields__}
    )
    params.baselines = tuple(params.baselines)
    wanted = [p for p in products if model.scorer is not None and p in model.scorer.product_ids]
    if not wanted:
        return None
    return prepare(
        r,
        settings,
        model.tenant,
        products=wanted,
        params=params,
        schema=model.schema,
        snapshot=snapshot,
        engine=engine,
    )


def served_auc_on_holdout(
    r: redis.Redis,
    settings: Settings,
    model: TrainingResult,
    snapshot: dict,
    products: list[str],
    cuts: dict[str, list[float]] | None = None,
    *,
    data: Dataset | None = None,
    decile_scores: dict[str, list[float | None]] | None = None,
    engine: TrainingEngine | None = None,
) -> dict[str, float | None]:
    """Holdout AUC per product of ``model``'s served scorer on the rows of ``snapshot``; with
    ``cuts``, also fills it with each product's score percentiles (see ``score_percentiles``)
    and ``decile_scores`` with its mean score per decile of them (live calibration reads it).

    The split is a hash of the customer key, so the holdout of the challenger's snapshot is
    the same set of customers whichever model scores it; the champion's own feature schema
    turns those rows into its features. ``data``: those rows prepared already.
    """
    if data is None:
        data = snapshot_data(r, settings, model, snapshot, products, engine)
    if data is None or model.scorer is None:
        return {}
    holdout = data.split == 2
    scores = model.scorer.score_batch(data.X[holdout])
    out = {}
    for j, product in enumerate(data.products):
        k = model.scorer.product_ids.index(product)
        out[product] = evaluate_scores(data.Y[holdout, j], scores[:, k]).get("auc")
        if cuts is not None:
            cuts[product] = score_percentiles(scores[:, k])
            if decile_scores is not None:
                decile_scores[product] = drift.decile_means(scores[:, k], cuts[product])
    return out


def score_percentiles(scores: np.ndarray) -> list[float]:
    """The 99 percentiles of a product's holdout scores, highest first: the top k% of people
    score at least element k - 1. Campaign audiences ("the top 20% on this product's model")
    and monitoring by score decile read them."""
    if scores.size == 0:
        return []
    qs = np.quantile(scores, 1.0 - np.arange(1, 100) / 100.0)
    return [round(float(q), 7) for q in qs]


def _train_anonymous(
    r: redis.Redis,
    settings: Settings,
    result: TrainingResult,
    params: TrainParams | None,
    progress: ProgressFn | None,
) -> dict:
    """The anonymous visitors' model of the same version (models.anonymous), saved beside the
    customer model; a version without one serves anonymous visitors with the customer model,
    and the reason is recorded."""
    base = TrainParams(**{k: v for k, v in result.params.items()
                          if k in TrainParams.__dataclass_fields__})  # fmt: skip
    base.baselines = tuple(base.baselines)
    try:
        anon = anonymous.train_anonymous(
            r, settings, result.tenant, result.version, result.snapshot["products"], base,
            progress=progress,
        )  # fmt: skip
    except TrainingError as err:
        return {"trained": False, "why": str(err)}
    # Written in a local folder, then added file by file to the published version through
    # the artifact store, so an object store holds it too.
    with tempfile.TemporaryDirectory() as tmp:
        saved = anonymous.save_anonymous(Path(tmp), anon)
        for path in sorted(f for f in saved.rglob("*") if f.is_file()):
            name = path.relative_to(tmp).as_posix()
            registry.write_version_file(
                settings, result.tenant, result.version, name, path.read_bytes()
            )
    return {"trained": True, **anonymous.summary(anon)}


def train_and_register(
    r: redis.Redis,
    settings: Settings,
    tenant: str,
    products: list[str] | None = None,
    label_source: str = "holdings",
    *,
    params: TrainParams | None = None,
    progress: ProgressFn | None = None,
    auto_promote: bool = True,
) -> dict:
    tenant_record = get_tenant(r, tenant)
    started = time.time()  # before training reads anything: erasures since then may be in it
    # A large tenant trains on the Dask cluster of the settings (models.training.distributed).
    on_dask = distributed.engine_for(r, settings, tenant) == "dask"
    assert not on_dask or settings.dask_scheduler
    # The cluster stays open while the run reads the archive again (holdout, champion).
    with (
        distributed.dask_engine(settings.dask_scheduler)  # type: ignore[arg-type]
        if on_dask
        else contextlib.nullcontext(None)
    ) as engine:
        result = train_tenant(
            r,
            settings,
            tenant,
            products,
            label_source,
            params=params,
            progress=progress,
            engine=engine,
        )
        if progress is not None:
            progress("evaluating on the holdout", 0, 2)
        save_result(settings, result)
        trained = result.trained_products
        cuts: dict[str, list[float]] = {}
        decile_scores: dict[str, list[float | None]] = {}
        data = snapshot_data(r, settings, result, result.snapshot, trained, engine)
        challenger = served_auc_on_holdout(
            r,
            settings,
            result,
            result.snapshot,
            trained,
            cuts,
            data=data,
            decile_scores=decile_scores,
        )

        def write(name: str, payload: bytes) -> None:
            registry.write_version_file(settings, tenant, result.version, name, payload)

        write(SCORE_CUTS_FILE, json.dumps(cuts).encode())
        if data is not None:
            # The training rows' feature distributions, which live drift is measured against.
            reference = drift.Reference.from_training(
                data.X,
                data.schema.feature_names,
                decile_scores,
                rows=np.flatnonzero(data.split == 0),
            )
            write(drift.DRIFT_FILE, reference.to_json().encode())
        del data
        anon_meta = _train_anonymous(r, settings, result, params, progress)
        current = registry.champion(r, tenant)
        champion_score = None
        compared: list[str] = []
        if current:
            try:
                champ = TrainingResult.load(registry.version_dir(settings, tenant, current))
                champ_aucs = served_auc_on_holdout(
                    r, settings, champ, result.snapshot, trained, engine=engine
                )
                compared = [
                    p
                    for p in trained
                    if champ_aucs.get(p) is not None and challenger.get(p) is not None
                ]
                champion_score = _mean_auc([champ_aucs[p] for p in compared])
            except (OSError, ValueError, TrainingError):
                champion_score = None
    challenger_score = (
        _mean_auc([challenger[p] for p in (compared or trained) if p in challenger]) or 0.0
    )
    if progress is not None:
        progress("registering", 1, 2)
    meta = {
        **result.summary(),
        "trained_at": result.created_at,
        "holdout_auc": challenger,
        "compared_products": compared,
        "anonymous": anon_meta,
    }
    if tenant_record is not None:  # else train_tenant refused already
        meta["lineage"] = lineage.record(
            settings, tenant_record, result.snapshot.get("crm_version"), write
        )
    decision = registry.register(
        r,
        tenant,
        result.version,
        meta,
        challenger_score=challenger_score,
        champion_score=champion_score,
        auto_promote=auto_promote,
    )
    # Registered first, then the erasures looked for (see models.lineage).
    overlapping = lineage.erasures_during(r, tenant, started, list_receipts(r, tenant, 1000))
    if overlapping:
        why = f"trained while erasures ran ({', '.join(overlapping[:5])})"
        lineage.flag_for_retraining(r, tenant, [result.version], why)
        decision["retrain"] = why
    if progress is not None:
        progress("done", 2, 2)
    return {
        "version": result.version,
        "summary": result.summary(),
        "registry": decision,
        "anonymous": anon_meta,  # trained, or why anonymous visitors get the customer model
    }
