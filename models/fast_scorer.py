"""Real-time scorer: every product's probability for one visitor in one pass, without xgboost.

All products' XGBoost trees are flattened into one padded, level-ordered forest
(models/tree_flatten.py) and traversed together with a few numpy operations per tree level;
products served by a logistic regression are one small matrix product. A product served by a
blend (models/blend.py) is fed by several parts, trees and/or linear, whose margins add up in
its column. The same arrays score a matrix of rows for offline batch scoring, so real time and
batch agree by construction.
The artifact saves to a plain .npz (no pickle) that serving loads without xgboost.

Measured on the 2-core dev machine (bench/bench_scorer.py, 20 products x 200 trees, depth 6):
the boosters called one by one take 10-20 ms per visitor; this scorer p50 ~0.15-0.25 ms
(CPU p99 ~0.4 ms). A numba-compiled loop over the same arrays measured ~0.08 ms: not worth a
~150 MB compiler dependency while numpy meets the target.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from models.blend import Blend
from models.linear_model import LinearModel
from models.tree_flatten import FlatForest, ModelFormatError, flatten, parse_booster
from store.artifacts import atomic_write

if TYPE_CHECKING:  # serving never imports xgboost
    import xgboost as xgb

    # One product's model: a binary XGBoost booster, a folded logistic regression, or a
    # blend of those (margins summed).
    ProductModel: TypeAlias = xgb.Booster | LinearModel | Blend

FORMAT = "offerwise-multiproduct-scorer"
FORMAT_VERSION = 1
BATCH_CHUNK_ROWS = 256  # keeps the (rows x trees) work arrays around 1M elements
_INF = np.float32(np.inf)
# Margins agree with xgboost's float32 accumulation to ~1e-5 at 200 trees; anything larger
# means the model was not reproduced (e.g. a model format this code does not understand).
VERIFY_MARGIN_TOL = 1e-4


SUBSET_CACHE = 4096  # product combinations whose trees contributions keeps at hand


class ScorerError(ValueError):
    """Bad scorer input or artifact, with a message naming what is wrong."""


def _sigmoid(m: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-m))


@dataclass(frozen=True)
class Walk:
    """One feature vector's pass through a scorer (``MultiProductScorer.walk``)."""

    margins: np.ndarray  # (n_products,) log-odds
    path: np.ndarray | None  # (depth + 1, n_trees) node per level; None without trees

    @property
    def scores(self) -> np.ndarray:
        return _sigmoid(self.margins)


def _add(out: np.ndarray, cols: np.ndarray, values: np.ndarray, unique: bool) -> None:
    """``out[..., cols] += values``, also when a column repeats (a blended product)."""
    if unique:
        out[..., cols] += values
    else:
        np.add.at(out, (Ellipsis, cols), values)  # type: ignore[arg-type]  # numpy's stubs


class MultiProductScorer:
    """Scores all products (tree or linear models) for a feature vector in one call."""

    def __init__(
        self,
        product_ids: Sequence[str],
        feature_names: Sequence[str],
        forest: FlatForest | None,
        tree_cols: np.ndarray,
        linear_cols: np.ndarray,
        linear_coef: np.ndarray,
        linear_intercept: np.ndarray,
        linear_fill: np.ndarray,
    ) -> None:
        self.product_ids: list[str] = list(product_ids)
        self.feature_names: list[str] = list(feature_names)
        self.n_features = len(self.feature_names)
        self._forest = forest
        self._tree_cols = np.asarray(tree_cols, dtype=np.intp)
        self._linear_cols = np.asarray(linear_cols, dtype=np.intp)
        self._coef = np.asarray(linear_coef, dtype=np.float64).reshape(-1, self.n_features)
        self._intercept = np.asarray(linear_intercept, dtype=np.float64)
        self._fill = np.asarray(linear_fill, dtype=np.float64).reshape(-1, self.n_features)
        self._check_consistent()
        # Each product is fed by one model, except blends: then its column repeats.
        self._tree_unique = np.unique(self._tree_cols).size == self._tree_cols.size
        self._linear_unique = np.unique(self._linear_cols).size == self._linear_cols.size
        if forest is not None:
            f = forest
            self._tree_ids = np.arange(f.n_trees, dtype=np.intp)
            self._root_right = 2 * self._tree_ids
            self._subsets: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            self._x2_template = np.zeros(2 * self.n_features + 1, dtype=np.float32)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_boosters(
        cls,
        models: Mapping[str, ProductModel],
        feature_names: Sequence[str],
        *,
        verify: bool = True,
    ) -> MultiProductScorer:
        """Build from {product_id: xgboost.Booster | LinearModel | Blend}, in the mapping's
        order (a blend's parts all feed its product's column).

        The boosters must be binary (binary:logistic / reg:logistic) gbtree models over exactly
        `feature_names`, scored with all their trees as ``booster.predict`` does by default
        (slice ``booster[: best_iteration + 1]`` first to serve the early-stopping best).
        With verify=True the flattened margins are checked against xgboost's own on rows
        built from the models' thresholds (values on, just below and above each, and NaN).
        """
        if not models:
            raise ScorerError("no product models given")
        feature_names = [str(n) for n in feature_names]
        if len(set(feature_names)) != len(feature_names):
            raise ScorerError("feature_names contains duplicates")
        n_features = len(feature_names)
        parsed, tree_cols, linear, linear_cols = [], [], [], []
        boosters: list[xgb.Booster] = []  # in the order of ``parsed``
        for col, (product_id, product_model) in enumerate(models.items()):
            parts = product_model.parts if isinstance(product_model, Blend) else [product_model]
            for model in parts:
                if isinstance(model, LinearModel):
                    if model.n_features != n_features:
                        raise ScorerError(
                            f"product {product_id!r}: linear model has {model.n_features} "
                            f"coefficients, feature_names has {n_features}"
                        )
                    linear.append(model)
                    linear_cols.append(col)
                elif hasattr(model, "save_raw") and hasattr(model, "num_features"):
                    parsed.append(parse_booster(str(product_id), model, feature_names))
                    boosters.append(model)
                    tree_cols.append(col)
                else:
                    raise ScorerError(
                        f"product {product_id!r}: {type(model).__name__} is neither an "
                        "xgboost.Booster, a LinearModel nor a Blend of those"
                    )
        forest = flatten(parsed, n_features) if parsed else None
        scorer = cls(
            product_ids=[str(p) for p in models],
            feature_names=feature_names,
            forest=forest,
            tree_cols=np.array(tree_cols, dtype=np.intp),
            linear_cols=np.array(linear_cols, dtype=np.intp),
            linear_coef=np.array([m.coef for m in linear]).reshape(-1, n_features),
            linear_intercept=np.array([m.intercept for m in linear], dtype=np.float64),
            linear_fill=np.array([m.fill for m in linear]).reshape(-1, n_features),
        )
        if verify and boosters:
            scorer._verify_against(boosters)
        return scorer

    def _verify_against(self, boosters: Sequence[xgb.Booster]) -> None:
        """Compare margins with xgboost on rows that sit on the split thresholds."""
        f = self._forest
        assert f is not None
        rng = np.random.default_rng(0)
        n_rows = 64
        X = np.full((n_rows, self.n_features), np.nan, dtype=np.float32)
        real = f.cond_slot < 2 * self.n_features
        feats, thrs = f.cond_slot[real] % self.n_features, f.cond_thr[real]
        for j in range(self.n_features):
            t = thrs[feats == j]
            if t.size == 0:
                t = np.zeros(1, dtype=np.float32)
            pick = rng.choice(t, size=n_rows)
            nudge = rng.integers(-1, 2, size=n_rows)  # one float32 step below / on / above
            vals = np.where(
                nudge < 0,
                np.nextafter(pick, -_INF),
                np.where(nudge > 0, np.nextafter(pick, _INF), pick),
            )
            keep = rng.random(n_rows) > 0.2
            X[keep, j] = vals[keep]
        mine = self._tree_margins(X)  # per booster, before blended parts are summed
        for k, booster in enumerate(boosters):
            theirs = booster.inplace_predict(X, predict_type="margin")
            diff = np.abs(mine[:, k] - np.asarray(theirs, dtype=np.float64))
            if not np.all(diff <= VERIFY_MARGIN_TOL):
                product_id = self.product_ids[self._tree_cols[k]]
                raise ModelFormatError(
                    f"product {product_id!r}: flattened trees disagree with xgboost "
                    f"(max margin difference {diff.max():.3g}); this model format is not "
                    "reproduced exactly"
                )

    def _check_consistent(self) -> None:
        P = len(self.product_ids)
        if len(set(self.product_ids)) != P:
            raise ScorerError("product_ids contains duplicates")
        cols = np.concatenate([self._tree_cols, self._linear_cols])
        if not np.array_equal(np.unique(cols), np.arange(P)):
            raise ScorerError("tree and linear product columns do not cover the products")
        n_tree = 0 if self._forest is None else self._forest.tree_starts.size
        if self._tree_cols.size != n_tree:
            raise ScorerError("tree product count does not match the flattened forest")
        L = self._linear_cols.size
        if self._coef.shape[0] != L or self._intercept.shape != (L,) or self._fill.shape[0] != L:
            raise ScorerError("linear model arrays do not match the linear products")
        if self._forest is not None and self._forest.n_features != self.n_features:
            raise ScorerError("forest feature count does not match feature_names")

    # ----------------------------------------------------------------- scoring
    def _check_row(self, x) -> np.ndarray:
        try:
            x = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ScorerError(f"feature vector is not numeric: {exc}") from None
        if x.ndim != 1 or x.shape[0] != self.n_features:
            raise ScorerError(
                f"feature vector has shape {x.shape}, expected ({self.n_features},) "
                "in feature_names order"
            )
        return x

    def _check_matrix(self, X) -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ScorerError(f"feature matrix is not numeric: {exc}") from None
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ScorerError(
                f"feature matrix has shape {X.shape}, expected (n_rows, {self.n_features})"
            )
        return X

    def walk(self, x) -> Walk:
        """One float32 feature vector's pass through every product: margins (order =
        product_ids), and the node each tree reached at each level, which ``contributions``
        reads instead of walking the trees again."""
        x = self._check_row(x)
        out = np.zeros(len(self.product_ids), dtype=np.float64)
        path = None
        f = self._forest
        if f is not None:
            F = self.n_features
            nan = np.isnan(x)
            # slots: [NaN->+inf (default right) | NaN->-inf (default left) | constant 0]
            x2 = self._x2_template.copy()
            x2[:F] = x
            x2[F : 2 * F] = x
            x2[:F][nan] = _INF
            x2[F : 2 * F][nan] = -_INF
            goes_right = np.repeat(x2, f.slot_counts) >= f.cond_thr
            # path[l]: each tree's node at level l (level-l nodes of tree t are t * 2**l ...)
            path = np.empty((f.depth + 1, f.n_trees), dtype=np.intp)
            path[0] = self._tree_ids
            for level, cond in enumerate(f.cond, start=1):
                parent = path[level - 1]
                np.add(2 * parent, goes_right[cond[parent]], out=path[level])
            leaves = f.leaf[path[-1]]
            tree = np.add.reduceat(leaves.astype(np.float64), f.tree_starts) + f.base_margin
            _add(out, self._tree_cols, tree, self._tree_unique)
        if self._linear_cols.size:
            _add(out, self._linear_cols, self._linear_margins(x[None, :])[0], self._linear_unique)
        return Walk(out, path)

    def margins(self, x) -> np.ndarray:
        """Log-odds per product (order = product_ids) for one float32 feature vector."""
        return self.walk(x).margins

    def score(self, x) -> np.ndarray:
        """Probability per product (order = product_ids) for one feature vector."""
        return _sigmoid(self.margins(x))

    def margins_batch(self, X, chunk_rows: int = BATCH_CHUNK_ROWS) -> np.ndarray:
        """Log-odds, shape (n_rows, n_products), vectorised across rows in bounded chunks."""
        X = self._check_matrix(X)
        out = np.empty((X.shape[0], len(self.product_ids)), dtype=np.float64)
        for start in range(0, X.shape[0], chunk_rows):
            chunk = X[start : start + chunk_rows]
            out[start : start + chunk.shape[0]] = self._margins_chunk(chunk)
        return out

    def score_batch(self, X, chunk_rows: int = BATCH_CHUNK_ROWS) -> np.ndarray:
        """Probabilities, shape (n_rows, n_products); same arrays and rules as score()."""
        return _sigmoid(self.margins_batch(X, chunk_rows))

    def _margins_chunk(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((X.shape[0], len(self.product_ids)), dtype=np.float64)
        if self._forest is not None:
            _add(out, self._tree_cols, self._tree_margins_chunk(X), self._tree_unique)
        if self._linear_cols.size:
            _add(out, self._linear_cols, self._linear_margins(X), self._linear_unique)
        return out

    def _tree_margins(self, X: np.ndarray, chunk_rows: int = BATCH_CHUNK_ROWS) -> np.ndarray:
        """Margins of each flattened booster (not summed per product), (n_rows, boosters)."""
        X = self._check_matrix(X)
        out = np.empty((X.shape[0], self._tree_cols.size), dtype=np.float64)
        for start in range(0, X.shape[0], chunk_rows):
            chunk = X[start : start + chunk_rows]
            out[start : start + chunk.shape[0]] = self._tree_margins_chunk(chunk)
        return out

    def _tree_margins_chunk(self, X: np.ndarray) -> np.ndarray:
        n, F = X.shape
        nan = np.isnan(X)
        f = self._forest
        assert f is not None
        X2 = np.zeros((n, 2 * F + 1), dtype=np.float32)
        X2[:, :F] = np.where(nan, _INF, X)
        X2[:, F : 2 * F] = np.where(nan, -_INF, X)
        goes_right = np.repeat(X2, f.slot_counts, axis=1) >= f.cond_thr
        flat = goes_right.ravel()
        row_base = (np.arange(n, dtype=np.intp) * f.cond_thr.size)[:, None]
        if f.depth:
            idx = self._root_right + goes_right[:, f.cond[0]]
            for cond in f.cond[1:]:
                step = flat[cond[idx] + row_base]
                idx *= 2
                idx += step
            leaves = f.leaf[idx]
        else:
            leaves = np.broadcast_to(f.leaf, (n, f.n_trees))
        margins = np.add.reduceat(leaves.astype(np.float64), f.tree_starts, axis=1)
        return margins + f.base_margin

    def _linear_margins(self, X: np.ndarray) -> np.ndarray:
        # An explicit per-row sum rather than BLAS: gemv and gemm round differently, and a
        # customer must score identically in real time and in batch.
        filled = np.where(np.isnan(X)[:, None, :], self._fill, X[:, None, :].astype(np.float64))
        return (filled * self._coef).sum(axis=2) + self._intercept

    def contributions(
        self, x, products: Sequence[int] | None = None, walk: Walk | None = None
    ) -> np.ndarray:
        """Per-feature contributions to each product's margin, shape (n_products, F + 1);
        the last column is the bias, and each row sums to that product's margin. With
        ``products`` (positions in ``product_ids``), only those rows, in that order: serving
        explains the few products it offers, from the ``walk`` of ``x`` it scored with
        (walked here when not given).

        Trees use the path attribution (Saabas) that xgboost computes with
        ``pred_contribs=True, approx_contribs=True``; linear products give coef * value
        (missing -> fill). For exact TreeSHAP, ask the original booster for pred_contribs.
        """
        x = self._check_row(x)
        F = self.n_features
        P = len(self.product_ids)
        rows = np.arange(P) if products is None else np.asarray(products, dtype=np.intp)
        if rows.size and (rows.min() < 0 or rows.max() >= P):
            raise ScorerError(f"product positions must be in [0, {P})")
        # where[c]: this product's row in the output, or -1 when it is not asked for
        where = np.full(P, -1, dtype=np.intp)
        where[rows] = np.arange(rows.size)
        out = np.zeros((rows.size, F + 1), dtype=np.float64)
        f = self._forest
        if f is not None:
            boosters = np.flatnonzero(where[self._tree_cols] >= 0)
            if boosters.size:
                path = (walk if walk is not None else self.walk(x)).path
                assert path is not None
                contrib = self._tree_contributions(path, f, boosters)
                _add(out.T, where[self._tree_cols[boosters]], contrib.T, self._tree_unique)
        if self._linear_cols.size:
            parts = np.flatnonzero(where[self._linear_cols] >= 0)
            if parts.size:
                xf = np.where(np.isnan(x)[None, :], self._fill[parts], x.astype(np.float64))
                linear = np.concatenate(
                    [self._coef[parts] * xf, self._intercept[parts, None]], axis=1
                )
                np.add.at(out, where[self._linear_cols[parts]], linear)
        return out

    def _tree_contributions(
        self, path: np.ndarray, f: FlatForest, boosters: np.ndarray
    ) -> np.ndarray:
        """The path attributions of the trees of ``boosters`` (flattened boosters), one row
        each, (boosters, F + 1), from a walk's ``path``: a handful of gathers over the few
        trees asked for, whatever the depth."""
        F = self.n_features
        trees, row, starts = self._subset(boosters)
        mean_flat, mean_at, feature_flat, feature_at = self._levels
        nodes = path[:, trees]  # (depth + 1, trees asked)
        means = mean_flat[nodes + mean_at]
        acc_size = boosters.size * (F + 1)
        if f.depth:
            # each step down a level credits its split feature with the change in mean
            delta = means[1:] - means[:-1]
            at = feature_flat[nodes[:-1] + feature_at] + row
            acc = np.bincount(at.ravel(), weights=delta.ravel(), minlength=acc_size)
        else:
            acc = np.zeros(acc_size, dtype=np.float64)
        contrib = acc.reshape(boosters.size, F + 1)
        # feature index F collected the (zero) padding steps; it becomes the bias
        contrib[:, F] = np.add.reduceat(means[0], starts) + f.base_margin[boosters]
        return contrib

    def _subset(self, boosters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For flattened boosters: their trees, each tree's first cell in the (boosters,
        F + 1) accumulator, and each booster's first position among those trees. Cached:
        serving asks for the same few products' boosters again and again."""
        key = boosters.tobytes()
        found = self._subsets.get(key)
        if found is not None:
            return found
        f = self._forest
        assert f is not None
        ends = np.append(f.tree_starts[1:], f.n_trees)
        counts = ends[boosters] - f.tree_starts[boosters]
        trees = np.concatenate(
            [np.arange(f.tree_starts[b], ends[b], dtype=np.intp) for b in boosters]
        )
        row = np.repeat(np.arange(boosters.size) * (self.n_features + 1), counts)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        if len(self._subsets) >= SUBSET_CACHE:
            self._subsets.clear()  # bounded; a serving process meets few combinations
        self._subsets[key] = found = (trees, row, starts)
        return found

    @cached_property
    def _levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The forest's per-level node means and split features, each flattened into one
        array with each level's offset as a column, so a path gathers all levels at once."""
        f = self._forest
        assert f is not None
        mean_flat = np.concatenate([m.astype(np.float64) for m in f.mean])
        mean_at = np.cumsum([0] + [m.size for m in f.mean[:-1]])[:, None]
        if f.depth:
            feature_flat = np.concatenate([a.astype(np.intp) for a in f.feature])
            feature_at = np.cumsum([0] + [a.size for a in f.feature[:-1]])[:, None]
        else:
            feature_flat = np.zeros(0, dtype=np.intp)
            feature_at = np.zeros((0, 1), dtype=np.intp)
        return mean_flat, mean_at, feature_flat, feature_at

    # ----------------------------------------------------------------- persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "product_ids": self.product_ids,
            "feature_names": self.feature_names,
            "depth": None if self._forest is None else self._forest.depth,
        }
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "tree_cols": self._tree_cols,
            "linear_cols": self._linear_cols,
            "linear_coef": self._coef,
            "linear_intercept": self._intercept,
            "linear_fill": self._fill,
        }
        f = self._forest
        if f is not None:
            arrays |= {
                "cond_slot": f.cond_slot,
                "cond_thr": f.cond_thr,
                "leaf": f.leaf,
                "tree_starts": f.tree_starts,
                "base_margin": f.base_margin,
            }
            for level in range(f.depth + 1):
                arrays[f"mean_{level}"] = f.mean[level]
                if level < f.depth:
                    arrays[f"cond_{level}"] = f.cond[level]
                    arrays[f"feature_{level}"] = f.feature[level]
        return arrays

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        # mypy matches **arrays against savez's allow_pickle: bool too; no key here is that.
        np.savez(buf, **self._arrays())  # type: ignore[arg-type]
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        """Write the artifact atomically and durably (readers never see a half-written file)."""
        data = self.to_bytes()
        atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))

    @classmethod
    def from_bytes(cls, data: bytes) -> MultiProductScorer:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ScorerError(f"not a scorer artifact (unreadable npz: {exc})") from None
        return cls._from_arrays(arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MultiProductScorer:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ScorerError(f"cannot read scorer artifact {os.fspath(path)!r}: {exc}") from None
        return cls.from_bytes(data)

    @classmethod
    def _from_arrays(cls, a: dict[str, np.ndarray]) -> MultiProductScorer:
        try:
            meta = json.loads(a["meta"].tobytes().decode())
        except (KeyError, ValueError) as exc:
            raise ScorerError(f"not a scorer artifact (bad metadata: {exc})") from None
        if meta.get("format") != FORMAT:
            raise ScorerError(f"not a scorer artifact (format {meta.get('format')!r})")
        if meta.get("version") != FORMAT_VERSION:
            raise ScorerError(
                f"scorer artifact version {meta.get('version')} is not supported "
                f"(this code reads version {FORMAT_VERSION})"
            )
        feature_names = meta["feature_names"]
        F = len(feature_names)
        try:
            forest = None
            depth = meta["depth"]
            if depth is not None:
                cond_slot = a["cond_slot"].astype(np.intp)
                forest = FlatForest(
                    n_features=F,
                    depth=int(depth),
                    cond_slot=cond_slot,
                    cond_thr=a["cond_thr"],
                    slot_counts=np.bincount(cond_slot, minlength=2 * F + 1).astype(np.intp),
                    cond=[a[f"cond_{lv}"] for lv in range(depth)],
                    leaf=a["leaf"],
                    feature=[a[f"feature_{lv}"] for lv in range(depth)],
                    mean=[a[f"mean_{lv}"] for lv in range(depth + 1)],
                    tree_starts=a["tree_starts"].astype(np.intp),
                    base_margin=a["base_margin"],
                )
                _check_forest(forest)
            return cls(
                product_ids=meta["product_ids"],
                feature_names=feature_names,
                forest=forest,
                tree_cols=a["tree_cols"],
                linear_cols=a["linear_cols"],
                linear_coef=a["linear_coef"],
                linear_intercept=a["linear_intercept"],
                linear_fill=a["linear_fill"],
            )
        except KeyError as exc:
            raise ScorerError(f"scorer artifact is missing array {exc}") from None


def _check_forest(f: FlatForest) -> None:
    """Reject a corrupted artifact before it can index out of bounds at request time."""
    F, T = f.n_features, f.n_trees
    if f.cond_slot.size != f.cond_thr.size or f.slot_counts.size != 2 * F + 1:
        raise ScorerError("scorer artifact: condition arrays are inconsistent")
    if f.cond_slot.size and (f.cond_slot.min() < 0 or f.cond_slot.max() > 2 * F):
        raise ScorerError("scorer artifact: condition slot out of range")
    if T == 0 or f.leaf.size != T << f.depth:
        raise ScorerError("scorer artifact: leaf array has the wrong size")
    for level in range(f.depth):
        c, feat = f.cond[level], f.feature[level]
        if c.size != T << level or (c.size and int(c.max()) >= f.cond_slot.size):
            raise ScorerError(f"scorer artifact: level {level} conditions are inconsistent")
        if feat.size != T << level or (feat.size and (feat.min() < 0 or feat.max() > F)):
            raise ScorerError(f"scorer artifact: level {level} features are inconsistent")
    if len(f.mean) != f.depth + 1 or any(m.size != T << lv for lv, m in enumerate(f.mean)):
        raise ScorerError("scorer artifact: node mean arrays have the wrong size")
    starts = f.tree_starts
    if starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= T:
        raise ScorerError("scorer artifact: tree_starts are inconsistent")
    if f.base_margin.size != starts.size:
        raise ScorerError("scorer artifact: base_margin has the wrong size")
