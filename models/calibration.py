"""Platt scaling, folded into the models themselves so that served scores are probabilities.

Boosted trees trained with class weights, a decision tree on balanced classes and a regularized
logistic regression all rank well but do not say "3% chance". A one-feature logistic regression
on the model's log-odds, fitted on the validation split, maps them to probabilities:
``p = sigmoid(a * margin + b)``. Because that map is affine in log-odds space, it folds into
the model: tree leaf values are multiplied by ``a`` and the base score moved; a linear model's
coefficients and intercept likewise. The calibrated model is then an ordinary booster or
``LinearModel`` that the fast scorer, ``booster.predict`` and XGBoost's contributions all read
the same way, with no separate calibration step to forget at serving time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from models.linear_model import LinearModel


@dataclass(frozen=True)
class Platt:
    a: float = 1.0
    b: float = 0.0

    def margin(self, raw_margin: np.ndarray) -> np.ndarray:
        return self.a * np.asarray(raw_margin, dtype=np.float64) + self.b

    def prob(self, raw_margin: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * self.margin(raw_margin)))  # sigmoid, no overflow

    def to_dict(self) -> dict:
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict) -> Platt:
        return cls(float(data["a"]), float(data["b"]))


def fit_platt(raw_margin: np.ndarray, y: np.ndarray) -> Platt:
    """Fit ``a, b`` by maximum likelihood (Newton steps on two parameters, tiny ridge)."""
    x = np.asarray(raw_margin, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if x.size == 0 or t.min() == t.max():
        rate = float(np.clip(t.mean() if t.size else 0.5, 1e-6, 1 - 1e-6))
        return Platt(0.0, float(np.log(rate / (1 - rate))))
    # Platt's smoothed targets keep the fit finite on separable data.
    n_pos, n_neg = t.sum(), t.size - t.sum()
    t = np.where(t > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    ridge = 1e-3 * x.size  # on the slope only: a = 0 (constant) when margins say nothing

    def loss(a: float, b: float) -> float:
        z = a * x + b
        # log(1 + e^z) - t z, computed without overflow
        return float(np.sum(np.logaddexp(0.0, z) - t * z) + 0.5 * ridge * a * a)

    a, b = 1.0, float(np.log(t.mean() / (1 - t.mean())))
    current = loss(a, b)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a * x + b)))  # sigmoid without overflow
        w = np.maximum(p * (1 - p), 1e-12)
        g = np.array([np.dot(p - t, x) + ridge * a, np.sum(p - t)])
        h = np.array([[np.dot(w, x * x) + ridge, np.dot(w, x)], [np.dot(w, x), w.sum() + 1e-9]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        while scale > 1e-6:  # backtracking: Newton may overshoot on tied or extreme margins
            na, nb = a - scale * step[0], b - scale * step[1]
            new = loss(na, nb)
            if new <= current:
                break
            scale *= 0.5
        else:
            break
        a, b, improvement, current = na, nb, current - new, new
        if improvement < 1e-10 * max(1.0, abs(current)):
            break
    return Platt(float(a), float(b))


def calibrate_linear(model: LinearModel, platt: Platt) -> LinearModel:
    return LinearModel(
        coef=model.coef * platt.a, intercept=model.intercept * platt.a + platt.b, fill=model.fill
    )


def base_margin_of(model_json: dict) -> float:
    params = model_json["learner"]["learner_model_param"]
    base = float(str(params["base_score"]).strip("[]").split(",")[0])
    b = np.float32(base)
    return float(-np.log(np.float32(1.0) / b - np.float32(1.0)))


def calibrate_booster(booster, platt: Platt):
    """A new booster whose margins are ``a * margin + b`` of the given one."""
    import xgboost as xgb

    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    trees = learner["gradient_booster"]["model"]["trees"]
    for tree in trees:
        leaf = np.asarray(tree["left_children"]) < 0
        cond = np.asarray(tree["split_conditions"], dtype=np.float64)
        cond[leaf] *= platt.a
        tree["split_conditions"] = cond.tolist()
        tree["base_weights"] = (
            np.asarray(tree["base_weights"], dtype=np.float64) * platt.a
        ).tolist()
    base = platt.a * base_margin_of(model) + platt.b
    base_score = float(np.clip(1.0 / (1.0 + np.exp(-base)), 1e-7, 1 - 1e-7))
    learner["learner_model_param"]["base_score"] = f"[{base_score!r}]"
    out = xgb.Booster(model_file=bytearray(json.dumps(model).encode()))
    out.feature_names = booster.feature_names
    return out
