"""Training results on disk: one folder per version under ``<artifacts>/models/<tenant>/``,
written atomically, and the file format of each stored model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from models.blend import Blend
from models.linear_model import LinearModel
from store.artifacts import ARTIFACTS, artifacts_for, join_key
from store.config import Settings

if TYPE_CHECKING:
    from models.fast_scorer import ProductModel
    from models.training.results import TrainingResult


def results_prefix(tenant: str) -> str:
    return join_key(ARTIFACTS, "models", tenant)


def results_root(settings: Settings, tenant: str) -> Path:
    return artifacts_for(settings).local_path(results_prefix(tenant))


def save_result(settings: Settings, result: TrainingResult) -> Path:
    """Publish the result as ``<artifacts>/models/<tenant>/<version>/`` through the artifact
    store: a complete, fsynced folder appears under its name, or nothing."""
    store = artifacts_for(settings)
    with store.staging(results_prefix(result.tenant)) as staged:
        result.save(staged.path)
        key = store.publish(staged, result.version)
    return store.local_path(key)


def result_versions(settings: Settings, tenant: str) -> list[str]:
    """The tenant's saved results' versions, oldest first (version ids sort by time)."""
    store, prefix = artifacts_for(settings), results_prefix(tenant)
    return [v for v in store.versions(prefix) if store.exists(join_key(prefix, v, "result.json"))]


def list_results(settings: Settings, tenant: str) -> list[Path]:
    """The tenant's saved results as local folders, oldest first."""
    store, prefix = artifacts_for(settings), results_prefix(tenant)
    return [store.local_path(join_key(prefix, v)) for v in result_versions(settings, tenant)]


def latest_result_dir(settings: Settings, tenant: str) -> Path | None:
    found = result_versions(settings, tenant)
    if not found:
        return None
    return artifacts_for(settings).local_path(join_key(results_prefix(tenant), found[-1]))


def _write_model(path: Path, model: ProductModel) -> None:
    if isinstance(model, LinearModel):
        data = {"kind": "linear", "coef": model.coef.tolist(), "intercept": model.intercept,
                "fill": model.fill.tolist()}  # fmt: skip
        path.write_text(json.dumps(data))
    elif isinstance(model, Blend):
        path.write_text(json.dumps(model.to_json()))
    else:
        path.write_bytes(bytes(model.save_raw("json")))


def _read_model(path: Path) -> ProductModel:
    raw = path.read_bytes()
    data = json.loads(raw)
    if data.get("kind") == "linear":
        return LinearModel(coef=data["coef"], intercept=data["intercept"], fill=data["fill"])
    if data.get("kind") == "blend":
        return Blend.from_json(data)
    import xgboost as xgb

    booster = xgb.Booster(model_file=bytearray(raw))
    return booster
