"""What a training run produced: each product's candidates, the choice and its figures
(``TrainingResult``), and how a result is written to and read from its folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.blend import Blend, scaled
from models.calibration import Platt, calibrate_booster, calibrate_linear
from models.fast_scorer import MultiProductScorer
from models.features import FeatureSchema
from models.linear_model import LinearModel
from models.training.artifacts import _read_model, _write_model
from models.training.params import TrainingError

if TYPE_CHECKING:
    from models.fast_scorer import ProductModel

RESULT_FORMAT = "offerwise-training-result"
RESULT_VERSION = 1


@dataclass
class Candidate:
    """One trained candidate of one product: the raw model and its calibration."""

    name: str
    model: ProductModel  # uncalibrated
    platt: Platt
    info: dict = field(default_factory=dict)

    def raw_margin(self, X: np.ndarray) -> np.ndarray:
        if isinstance(self.model, (LinearModel, Blend)):
            return self.model.margin(X)
        return np.asarray(self.model.inplace_predict(X, predict_type="margin"), dtype=np.float64)

    def prob(self, X: np.ndarray) -> np.ndarray:
        return self.platt.prob(self.raw_margin(X))

    def calibrated(self) -> ProductModel:
        if isinstance(self.model, Blend):  # a * sum(parts) + b: scale each part, b on the first
            parts = [scaled(m, self.platt.a, self.platt.b if k == 0 else 0.0)
                     for k, m in enumerate(self.model.parts)]  # fmt: skip
            return Blend(parts, self.model.names)
        if isinstance(self.model, LinearModel):
            return calibrate_linear(self.model, self.platt)
        return calibrate_booster(self.model, self.platt)


@dataclass
class ProductResult:
    product_id: str
    status: str  # "ok" | "error"
    error: str | None = None
    chosen: str | None = None
    note: str | None = None
    positives: dict = field(default_factory=dict)  # split -> positives
    rows: dict = field(default_factory=dict)  # split -> rows (train: rows actually used)
    candidates: dict = field(
        default_factory=dict
    )  # name -> {validation or cv, holdout, calibration, info}
    # How the served candidate was chosen: {"method": "validation" | "cross-validation", ...}
    selection: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingResult:
    tenant: str
    version: str
    created_at: float
    params: dict
    schema: FeatureSchema
    products: dict[str, ProductResult]
    candidates: dict[str, dict[str, Candidate]]  # product -> name -> candidate
    snapshot: dict
    timings: dict
    evaluation: dict = field(default_factory=dict)  # product -> candidate -> holdout figures
    scorer: MultiProductScorer | None = None

    @property
    def served(self) -> dict[str, ProductModel]:
        """product -> calibrated served model (xgboost.Booster or LinearModel)."""
        return {
            p: self.candidates[p][res.chosen].calibrated()
            for p, res in self.products.items()
            if res.status == "ok" and res.chosen
        }

    @property
    def trained_products(self) -> list[str]:
        return [p for p, res in self.products.items() if res.status == "ok"]

    def summary(self) -> dict:
        """The JSON the CLI prints and the registry stores (no models, no curves)."""
        return {
            "tenant": self.tenant,
            "version": self.version,
            "created_at": self.created_at,
            "label_source": self.snapshot.get("label_source"),
            "features": self.schema.n_features,
            "products_trained": self.trained_products,
            "products_failed": {p: r.error for p, r in self.products.items() if r.status != "ok"},
            "products": {p: r.to_dict() for p, r in self.products.items()},
            "snapshot": self.snapshot,
            "timings": self.timings,
            "params": self.params,
        }

    # ------------------------------------------------------------- persistence
    def save(self, folder: Path | str) -> Path:
        """Write the result into ``folder`` (created; must not hold another result)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index = {p: i for i, p in enumerate(self.products)}
        (folder / "schema.json").write_bytes(self.schema.to_json())
        models_dir = folder / "models"
        served_dir = folder / "served"
        for p, cands in self.candidates.items():
            d = models_dir / str(index[p])
            d.mkdir(parents=True, exist_ok=True)
            for name, cand in cands.items():
                _write_model(d / f"{name}.json", cand.model)
        for p, model in self.served.items():
            served_dir.mkdir(exist_ok=True)
            _write_model(served_dir / f"{index[p]}.json", model)
        if self.scorer is not None:
            self.scorer.save(folder / "scorer.npz")
        (folder / "evaluation.json").write_text(json.dumps(self.evaluation))
        meta = {
            "format": RESULT_FORMAT,
            "format_version": RESULT_VERSION,
            **self.summary(),
            "product_index": index,
            "calibration": {
                p: {name: {**c.platt.to_dict(), "info": c.info} for name, c in cands.items()}
                for p, cands in self.candidates.items()
            },
        }
        (folder / "result.json").write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> TrainingResult:
        folder = Path(folder)
        try:
            meta = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError) as err:
            raise TrainingError(f"{folder} holds no readable training result ({err})") from None
        if meta.get("format") != RESULT_FORMAT:
            raise TrainingError(f"{folder}/result.json is not a training result")
        schema = FeatureSchema.from_json((folder / "schema.json").read_bytes())
        products = {p: ProductResult(**d) for p, d in meta["products"].items()}
        candidates: dict[str, dict[str, Candidate]] = {}
        for p, cals in meta.get("calibration", {}).items():
            d = folder / "models" / str(meta["product_index"][p])
            candidates[p] = {
                name: Candidate(name, _read_model(d / f"{name}.json"), Platt.from_dict(cal),
                                cal.get("info", {}))
                for name, cal in cals.items()
            }  # fmt: skip
        scorer_path = folder / "scorer.npz"
        scorer = MultiProductScorer.load(scorer_path) if scorer_path.is_file() else None
        eval_path = folder / "evaluation.json"
        evaluation = json.loads(eval_path.read_text()) if eval_path.is_file() else {}
        return cls(
            tenant=meta["tenant"], version=meta["version"], created_at=meta["created_at"],
            params=meta["params"], schema=schema, products=products, candidates=candidates,
            snapshot=meta["snapshot"], timings=meta["timings"], evaluation=evaluation,
            scorer=scorer,
        )  # fmt: skip


def headline(ev: dict) -> dict:
    keys = ("auc", "log_loss", "brier", "capture_at_10", "capture_at_20", "positives", "rows")
    out = {k: ev.get(k) for k in keys}
    out["ece"] = (ev.get("calibration") or {}).get("ece")
    return out
