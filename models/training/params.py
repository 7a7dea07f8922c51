"""What a training run is told: ``TrainParams``, the progress callback, and the error it
raises when it cannot train."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from models.training.results import TrainingResult
    from store.artifacts import ArtifactStore

CANDIDATES = ("xgboost", "logistic", "tree", "popularity")
ProgressFn = Callable[[str, int, int], None]


class TrainingError(ValueError):
    """Training refused or impossible; ``result`` holds per-product reasons when there are any."""

    def __init__(self, message: str, result: TrainingResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class TrainParams:
    label_source: str = "holdings"
    label_days: int = 30
    max_rounds: int = 200
    learning_rate: float = 0.2
    max_depth: int = 6
    early_stopping: int = 20
    max_bin: int = 256
    min_positives: int = 20  # positives in the training split
    min_validation_positives: int = 5
    max_train_rows: int = 200_000  # per product; above: all positives + sampled negatives
    max_baseline_rows: int = 100_000  # the baselines learn from a subsample of those rows
    max_pos_weight: float = 50.0
    product_views: bool = True  # web_viewed_<product> features
    baselines: tuple[str, ...] = ("logistic", "tree", "popularity")
    # Small data (models/training/selection.py): a product whose training part holds fewer
    # positives than this is chosen by repeated stratified k-fold cross-validation instead of
    # one validation slice (0: never), with small-data XGBoost settings and a blend candidate.
    cv_max_positives: int = 3000
    cv_folds: int = 5
    cv_repeats: int = 3
    cv_max_rows: int = 60_000  # above: all positives + sampled negatives, for the folds only
    cv_max_depth: int = 3
    cv_learning_rate: float = 0.05
    cv_min_child_weight: float = 1.0
    cv_lambda: float = 5.0
    cv_max_rounds: int = 600
    cv_early_stopping: int = 40
    blend: bool = True  # the mean of the best two candidates' calibrated log-odds competes
    seed: int = 0
    nthread: int = 0  # 0: all cores

    def to_dict(self) -> dict:
        d = asdict(self)
        d["baselines"] = list(self.baselines)
        return d


class TrainingEngine(Protocol):
    """Where the heavy steps of a run happen when not in this process (a Dask cluster:
    ``models.training.distributed``): reading the archive and fitting XGBoost."""

    def load_events(self, store: ArtifactStore, tenant: str) -> pd.DataFrame: ...

    def fit_xgboost(
        self,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
        feature_names: Sequence[str],
        params: TrainParams,
    ) -> tuple[Any, dict]: ...

    def describe(self) -> dict: ...


def _progress(fn: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if fn is not None:
        fn(stage, done, total)
