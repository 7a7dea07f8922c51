"""Per-product propensity models for a tenant: data, XGBoost and baselines, choice, calibration.

``train_tenant`` reads the tenant's live CRM version (customers and holdings), its catalog and
event archive, builds one feature matrix with the shared ``FeatureBuilder``, and for every
product trains four candidates on the same split:

- ``xgboost``: binary hist trees (depth 6), early stopping on validation AUC, positives weighted
  by ``scale_pos_weight`` (negatives are subsampled for very large tenants, all positives kept);
- ``logistic``, ``tree``, ``popularity``: the baselines (models/baselines.py).

Split: each customer's keyed hash puts them in train (70%), validation (15%) or holdout (15%),
so the same customers are held out in every run of the tenant and two versions can be compared
on the same holdout. The holdout is used for evaluation only.

The candidate with the best *validation* AUC is served (the report says so plainly when it is
not XGBoost). Each candidate is Platt-calibrated on validation and the calibration is folded
into the model (models/calibration.py), so served scores are probabilities. The served models
of all products become one ``MultiProductScorer`` (the real-time artifact).

A product that cannot be modelled (no or too few positives, unknown) gets an error in the
result and the others go on; a tenant that cannot be trained at all raises ``TrainingError``.

The package's modules: ``params`` (what a run is told), ``dataset`` (the rows, features, labels
and split a run learns from), ``fit`` (the candidates of each product and the choice),
``results`` (what a run produced), ``artifacts`` (results on disk), ``holdout`` (a result's
holdout scored again and compared).
"""

from models.training.artifacts import latest_result_dir, list_results, results_root, save_result
from models.training.dataset import (
    MAX_FEATURE_PRODUCTS,
    MIN_FEATURE_HOLDERS,
    SPLIT,
    Dataset,
    prepare,
    split_of,
)
from models.training.fit import fit_xgboost, new_version_id, train_tenant
from models.training.holdout import (
    comparison,
    evaluate_result,
    gains_curves,
    write_gains_chart,
)
from models.training.params import (
    CANDIDATES,
    ProgressFn,
    TrainingEngine,
    TrainingError,
    TrainParams,
)
from models.training.results import (
    RESULT_FORMAT,
    RESULT_VERSION,
    Candidate,
    ProductResult,
    TrainingResult,
    headline,
)

__all__ = [
    "CANDIDATES",
    "MAX_FEATURE_PRODUCTS",
    "MIN_FEATURE_HOLDERS",
    "RESULT_FORMAT",
    "RESULT_VERSION",
    "SPLIT",
    "Candidate",
    "Dataset",
    "ProductResult",
    "ProgressFn",
    "TrainParams",
    "TrainingEngine",
    "TrainingError",
    "TrainingResult",
    "comparison",
    "evaluate_result",
    "fit_xgboost",
    "gains_curves",
    "headline",
    "latest_result_dir",
    "list_results",
    "new_version_id",
    "prepare",
    "results_root",
    "save_result",
    "split_of",
    "train_tenant",
    "write_gains_chart",
]
