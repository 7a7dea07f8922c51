"""A product model that is a logistic regression, in the form the fast scorer evaluates.

When a regularised logistic regression wins validation for a product, serving must still score
every product in one call. Any preprocessing that is affine per feature (mean/median/constant
imputation, standard scaling) folds into one weight vector, an intercept and a per-feature fill
value for missing inputs, so the scorer needs no scikit-learn at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class LinearModelError(ValueError):
    """A linear model that cannot be folded or does not match the feature vector."""


@dataclass(init=False)  # the fill is optional to give, never missing once made
class LinearModel:
    """P(y=1 | x) = sigmoid(coef . x' + intercept), where x' is x with NaN replaced by fill."""

    coef: np.ndarray
    intercept: float
    fill: np.ndarray

    def __init__(self, coef: np.ndarray, intercept: float, fill: np.ndarray | None = None) -> None:
        self.coef = np.asarray(coef, dtype=np.float64).ravel()
        if fill is None:
            fill = np.zeros_like(self.coef)
        self.fill = np.asarray(fill, dtype=np.float64).ravel()
        self.intercept = float(intercept)
        if self.fill.shape != self.coef.shape:
            raise LinearModelError(f"fill has {self.fill.size} values, coef has {self.coef.size}")
        for name, values in (("coef", self.coef), ("fill", self.fill)):
            if not np.all(np.isfinite(values)):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise LinearModelError(f"{name}[{bad}] is not finite")
        if not np.isfinite(self.intercept):
            raise LinearModelError("intercept is not finite")

    @property
    def n_features(self) -> int:
        return int(self.coef.size)

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Log-odds for rows of X (reference implementation; the scorer vectorises this)."""
        X = np.asarray(X, dtype=np.float64)
        return np.where(np.isnan(X), self.fill, X) @ self.coef + self.intercept

    @classmethod
    def from_sklearn(cls, estimator) -> LinearModel:
        """Fold a fitted binary LogisticRegression, or a Pipeline of SimpleImputer and/or
        StandardScaler ending in one, into a LinearModel with identical probabilities.

        Without an imputer, sklearn cannot score NaN at all; missing values then count as 0.
        """
        steps = getattr(estimator, "steps", None)
        steps = [s for _, s in steps] if steps is not None else [estimator]
        *prep, final = steps
        coef = getattr(final, "coef_", None)
        classes = getattr(final, "classes_", None)
        if coef is None or classes is None or type(final).__name__ != "LogisticRegression":
            raise LinearModelError(
                f"final step {type(final).__name__} is not a fitted LogisticRegression"
            )
        if coef.shape[0] != 1 or len(classes) != 2:
            raise LinearModelError("LogisticRegression must be binary (two classes)")
        w = np.asarray(coef, dtype=np.float64).ravel()
        b = float(np.asarray(final.intercept_).ravel()[0])
        n = w.size
        # Walk back from the classifier: fold each affine step into (w, b).
        fill = None
        scale_shift: list[tuple[np.ndarray, np.ndarray]] = []
        for step in prep:
            kind = type(step).__name__
            if kind == "StandardScaler":
                mean = step.mean_ if step.with_mean else np.zeros(n)
                scale = step.scale_ if step.with_std else np.ones(n)
                scale_shift.append((np.asarray(mean, float), np.asarray(scale, float)))
            elif kind == "SimpleImputer":
                if fill is not None or scale_shift:
                    raise LinearModelError("SimpleImputer must be the first and only imputer")
                if getattr(step, "add_indicator", False):
                    raise LinearModelError("SimpleImputer(add_indicator=True) is not supported")
                missing = step.missing_values
                if not (isinstance(missing, float) and np.isnan(missing)):
                    raise LinearModelError("SimpleImputer must impute NaN (missing_values=nan)")
                stats = np.asarray(step.statistics_, dtype=np.float64)
                if stats.size != n or not np.all(np.isfinite(stats)):
                    raise LinearModelError(
                        "SimpleImputer dropped or could not fill an all-missing feature; "
                        "fit it with keep_empty_features=True"
                    )
                fill = stats
            else:
                raise LinearModelError(f"pipeline step {kind} cannot be folded into a linear model")
        for mean, scale in reversed(scale_shift):
            if mean.size != n or scale.size != n:
                raise LinearModelError("StandardScaler size differs from the classifier's")
            w = w / scale
            b = b - float(w @ mean)
        return cls(coef=w, intercept=b, fill=fill)
