"""A product model that is a blend of other models: its log-odds are the sum of its parts'.

The blend of two candidates that training serves is the mean of their *calibrated log-odds*,
re-calibrated: ``a * (m1' + m2') / 2 + b`` where ``m'`` is a candidate's Platt-calibrated
margin. Every step of that is affine in each part's margin, so it folds into the parts
(tree leaves and base score scaled, linear coefficients and intercept scaled, exactly as
calibration is folded, see models/calibration.py), and the blend's margin is just the sum of
its parts' margins. The fast scorer serves it as one product column fed by several parts
(trees and/or linear), so real time and batch score it with the same arrays.

A rank average would blend as well on the training report but cannot be served without a
reference table of each part's score distribution; a mean of log-odds needs none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.linear_model import LinearModel


class BlendError(ValueError):
    """A blend that cannot be built or read."""


@dataclass
class Blend:
    """Margin = sum of the parts' margins (each an ``xgboost.Booster`` or ``LinearModel``)."""

    parts: list[Any]
    names: list[str]  # which candidate each part came from (for the report and explanations)

    def __post_init__(self) -> None:
        if len(self.parts) < 2 or len(self.parts) != len(self.names):
            raise BlendError("a blend needs at least two named parts")
        for part in self.parts:
            if isinstance(part, Blend):
                raise BlendError("a blend cannot contain a blend")

    def margin(self, X: np.ndarray) -> np.ndarray:
        return np.sum([part_margin(p, X) for p in self.parts], axis=0)

    def to_json(self) -> dict:
        return {
            "kind": "blend",
            "names": list(self.names),
            "parts": [part_to_json(p) for p in self.parts],
        }

    @classmethod
    def from_json(cls, data: dict) -> Blend:
        if data.get("kind") != "blend":
            raise BlendError("not a blend")
        return cls([part_from_json(p) for p in data["parts"]], list(data["names"]))


def part_margin(model: Any, X: np.ndarray) -> np.ndarray:
    """Log-odds of one (non-blend) model for rows of X."""
    if isinstance(model, LinearModel):
        return model.margin(X)
    return np.asarray(model.inplace_predict(X, predict_type="margin"), dtype=np.float64)


def part_to_json(model: Any) -> dict:
    if isinstance(model, LinearModel):
        return {"kind": "linear", "coef": model.coef.tolist(), "intercept": model.intercept,
                "fill": model.fill.tolist()}  # fmt: skip
    return {"kind": "xgboost", "model": json.loads(bytes(model.save_raw("json")))}


def part_from_json(data: dict) -> Any:
    if data.get("kind") == "linear":
        return LinearModel(coef=data["coef"], intercept=data["intercept"], fill=data["fill"])
    if data.get("kind") == "xgboost":
        import xgboost as xgb

        return xgb.Booster(model_file=bytearray(json.dumps(data["model"]).encode()))
    raise BlendError(f"unknown blend part kind {data.get('kind')!r}")


def scaled(model: Any, a: float, b: float = 0.0) -> Any:
    """``model`` whose margin is ``a * margin + b`` (folded, see models/calibration.py)."""
    from models.calibration import Platt, calibrate_booster, calibrate_linear

    if isinstance(model, LinearModel):
        return calibrate_linear(model, Platt(a, b))
    return calibrate_booster(model, Platt(a, b))


def blend_of(models: Sequence[Any], names: Sequence[str], weights: Sequence[float],
             offset: float = 0.0) -> Blend:  # fmt: skip
    """The blend whose margin is ``sum(w_k * margin_k) + offset`` (offset folded into part 0)."""
    parts = [scaled(m, float(w), offset if k == 0 else 0.0) for k, (m, w) in
             enumerate(zip(models, weights, strict=True))]  # fmt: skip
    return Blend(parts, list(names))
