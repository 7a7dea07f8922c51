"""A result's holdout: scored again from its data snapshot with every stored candidate
(``evaluate_result``), the candidates side by side (``comparison``), the gains chart."""

from __future__ import annotations

from pathlib import Path

import redis

from models.evaluation import evaluate_scores, gains_chart
from models.training.dataset import prepare
from models.training.params import ProgressFn, TrainParams
from models.training.results import TrainingResult, headline
from store.config import Settings


def evaluate_result(
    r: redis.Redis,
    settings: Settings,
    result: TrainingResult,
    *,
    progress: ProgressFn | None = None,
) -> dict:
    """Score the result's holdout again from its data snapshot with every stored candidate.

    Returns product -> candidate -> holdout figures (``evaluate_scores``), and refreshes
    ``result.evaluation``.
    """
    params = TrainParams(
        **{k: v for k, v in result.params.items() if k in TrainParams.__dataclass_fields__}
    )
    params.baselines = tuple(params.baselines)
    data = prepare(r, settings, result.tenant, products=None, params=params,
                   schema=result.schema, snapshot=result.snapshot, progress=progress)  # fmt: skip
    holdout = data.split == 2
    out: dict[str, dict] = {}
    for j, product in enumerate(data.products):
        cands = result.candidates.get(product)
        if not cands:
            continue
        y = data.Y[holdout, j]
        X = data.X[holdout]
        out[product] = {name: evaluate_scores(y, c.prob(X)) for name, c in cands.items()}
    result.evaluation = out
    return out


def comparison(result: TrainingResult) -> dict:
    """Side by side per product: each candidate's holdout headline figures and the figures
    it was chosen on (``cv``: mean and sd of the fold AUCs, or ``validation_auc``), the served
    one and why (``note``, ``selection``), and in plain words whether XGBoost beat logistic
    regression on AUC and capture@20%."""
    out: dict[str, dict] = {}
    for product, res in result.products.items():
        if res.status != "ok":
            out[product] = {"status": "error", "error": res.error}
            continue
        ev = result.evaluation.get(product, {})
        cands = {name: headline(e) for name, e in ev.items()}
        for name, fig in cands.items():  # how each did when the choice was made
            chosen_on = res.candidates.get(name, {})
            if "cv" in chosen_on:
                fig["cv"] = chosen_on["cv"]
            elif "validation" in chosen_on:
                fig["validation_auc"] = chosen_on["validation"].get("auc")
        entry: dict[str, object] = {
            "status": "ok",
            "served": res.chosen,
            "note": res.note,
            "selection": res.selection,
            "candidates": cands,
        }
        x, lr = cands.get("xgboost"), cands.get("logistic")
        if x and lr and x["auc"] is not None and lr["auc"] is not None:
            beats_auc = x["auc"] > lr["auc"]
            beats_cap = (x["capture_at_20"] or 0) > (lr["capture_at_20"] or 0)
            if beats_auc and beats_cap:
                verdict = "XGBoost beats logistic regression on holdout AUC and capture@20%"
            else:
                lost = [w for w, b in (("AUC", beats_auc), ("capture@20%", beats_cap)) if not b]
                verdict = (
                    f"XGBoost does NOT beat logistic regression on holdout {' and '.join(lost)}"
                )
            entry["xgboost_vs_logistic"] = {
                "beats_on_auc": beats_auc,
                "beats_on_capture_at_20": beats_cap,
                "verdict": verdict,
            }
        out[product] = entry
    return out


def write_gains_chart(result: TrainingResult, path: Path | str) -> Path:
    curves = {
        p: {name: ev.get("gains", []) for name, ev in cands.items()}
        for p, cands in result.evaluation.items()
    }
    served = {p: res.chosen for p, res in result.products.items() if res.chosen}
    return gains_chart(curves, path, served=served,
                       title=f"{result.tenant} {result.version}: cumulative gains on the holdout")  # fmt: skip


def gains_curves(result: TrainingResult, points: int = 20) -> dict[str, dict]:
    """Per product, each candidate's cumulative gains on the holdout (share of the positives
    found in the top k% of the list) at ``points`` + 1 evenly spaced k, and the served one;
    what the dashboard draws (the full curves are 101 points per candidate)."""
    out: dict[str, dict] = {}
    for product, cands in result.evaluation.items():
        curves = {}
        for name, ev in cands.items():
            curve = list(ev.get("gains") or [])
            if len(curve) > 1:
                last = len(curve) - 1
                curves[name] = [
                    round(float(curve[round(i * last / points)]), 4) for i in range(points + 1)
                ]
        res = result.products.get(product)
        out[product] = {"served": res.chosen if res else None, "curves": curves}
    return out
