"""Model quality on a holdout: discrimination, calibration, lift and gains, and the gains chart.

Rank-based figures (gains, lift, capture) treat tied scores fairly: a group of equal scores
counts as if its rows came in random order, i.e. its positives are spread evenly across it.
Without that, a constant score (the popularity baseline) would look good or bad depending on
the order the rows happen to be in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

GAINS_POINTS = 100  # the gains curve at every percent of the scored list
CALIBRATION_BINS = 10
EPS = 1e-15


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when the holdout has one class only."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size, dtype=np.float64)
    sorted_p = p[order]
    first = np.r_[True, sorted_p[1:] != sorted_p[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], p.size]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float | None:
    y = np.asarray(y, dtype=np.float64)
    if y.size == 0:
        return None
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float | None:
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean((np.asarray(p, dtype=np.float64) - y) ** 2)) if y.size else None


def gains_curve(y: np.ndarray, p: np.ndarray, points: int = GAINS_POINTS) -> list[float]:
    """Share of all positives found in the top k% of the list, for k = 0..points (ties spread)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n, total = y.size, y.sum()
    if n == 0 or total == 0:
        return [float("nan")] * (points + 1)
    order = np.argsort(-p, kind="mergesort")
    sp, sy = p[order], y[order]
    last = np.r_[sp[1:] != sp[:-1], True]  # end of each tie group
    ends = np.flatnonzero(last) + 1
    cum = np.r_[0.0, np.cumsum(sy)[ends - 1]]  # positives up to each group end
    xs = np.r_[0, ends]  # rows up to each group end
    at = np.linspace(0, n, points + 1)
    found = np.interp(at, xs, cum)  # linear within a tie group: positives spread evenly
    return (found / total).tolist()


def capture_at(curve: Sequence[float], share: float) -> float:
    """Share of positives in the top ``share`` of the list, read off a gains curve."""
    points = len(curve) - 1
    return float(np.interp(share * points, np.arange(points + 1), np.asarray(curve)))


def lift_by_decile(y: np.ndarray, p: np.ndarray) -> list[dict]:
    """Per decile of the scored list (best first): positive rate, lift over the base rate and
    share of all positives."""
    curve = gains_curve(y, p, points=10)
    y = np.asarray(y, dtype=np.float64)
    base = float(y.mean()) if y.size else float("nan")
    out = []
    for d in range(10):
        share = curve[d + 1] - curve[d]
        rate = share * y.sum() / (y.size / 10) if y.size else float("nan")
        out.append(
            {
                "decile": d + 1,
                "rate": _r(rate),
                "lift": _r(rate / base) if base > 0 else None,
                "share_of_positives": _r(share),
            }
        )
    return out


def reliability(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Calibration: rows split into equal-count bins by predicted probability; per bin the mean
    prediction and the observed rate. ``ece`` is their mean absolute gap, weighted by rows."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.size == 0:
        return {"bins": [], "ece": None}
    order = np.argsort(p, kind="mergesort")
    parts = np.array_split(order, min(bins, y.size))
    table, ece = [], 0.0
    for part in parts:
        mean_p, rate = float(p[part].mean()), float(y[part].mean())
        ece += abs(mean_p - rate) * part.size / y.size
        table.append(
            {
                "mean_predicted": _r(mean_p),
                "observed_rate": _r(rate),
                "count": int(part.size),
                "min": _r(float(p[part].min())),
                "max": _r(float(p[part].max())),
            }
        )
    return {"bins": table, "ece": _r(ece)}


def evaluate_scores(y: np.ndarray, p: np.ndarray) -> dict:
    """All holdout figures of one set of scores."""
    y = np.asarray(y, dtype=bool)
    curve = gains_curve(y, p)
    has_pos = bool(y.any())
    return {
        "rows": int(y.size),
        "positives": int(y.sum()),
        "base_rate": _r(float(y.mean())) if y.size else None,
        "auc": _r(auc(y, p)),
        "log_loss": _r(log_loss(y, p)),
        "brier": _r(brier(y, p)),
        "capture_at_10": _r(capture_at(curve, 0.10)) if has_pos else None,
        "capture_at_20": _r(capture_at(curve, 0.20)) if has_pos else None,
        "lift_by_decile": lift_by_decile(y, p) if has_pos else [],
        "calibration": reliability(y, p),
        "gains": [_r(v) for v in curve] if has_pos else [],
    }


def _r(v: float | None, digits: int = 6) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), digits)


# --------------------------------------------------------------------------------- the chart
def gains_chart(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: Path | str,
    *,
    title: str = "Cumulative gains on the holdout",
    served: Mapping[str, str] | None = None,
) -> Path:
    """One panel per product, one line per candidate (and the random diagonal); PNG at path.

    ``curves``: product -> candidate -> gains curve (``gains_curve`` output).
    ``served``: product -> the candidate served, drawn bold and named in the panel title.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    products = [p for p, c in curves.items() if c]
    n = max(1, len(products))
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    colors = {
        "xgboost": "#d62728",
        "logistic": "#1f77b4",
        "tree": "#2ca02c",
        "popularity": "#7f7f7f",
        "blend": "#9467bd",
    }
    for k, ax in enumerate(axes.flat):
        if k >= len(products):
            ax.axis("off")
            continue
        product = products[k]
        for name, curve in curves[product].items():
            ys = np.asarray(curve, dtype=np.float64)
            if ys.size == 0 or np.isnan(ys).all():
                continue
            xs = np.linspace(0, 1, ys.size)
            bold = served is not None and served.get(product) == name
            ax.plot(xs, ys, label=name, color=colors.get(name), linewidth=2.4 if bold else 1.2)
        ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8, label="random")
        head = product if served is None else f"{product} (served: {served.get(product, '-')})"
        ax.set_title(head, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("share of customers targeted", fontsize=8)
        ax.set_ylabel("share of buyers found", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
