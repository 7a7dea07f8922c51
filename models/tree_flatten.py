"""Flatten XGBoost binary boosters into level-ordered numpy arrays for fast traversal.

Why this layout (chosen by measurement, see bench/bench_scorer.py): calling 20 boosters one by
one costs ~0.5 ms of per-call overhead each. Traversing all trees of all products at once with
numpy needs a handful of vectorised operations per tree level, so the cost is set by the number
of array elements touched, and the layout minimises them:

* Every tree is padded to a perfect binary tree of the forest's depth D and stored level by level
  ("heap" numbering): the node at level ``l``, position ``p`` of tree ``t`` sits at index
  ``t * 2**l + p`` of that level's array. Its children are then at ``2 * i`` and ``2 * i + 1`` of
  the next level, so one traversal step is ``i = 2 * i + went_right`` with no child pointers.
  A leaf above depth D becomes a chain of "always right" nodes; its value sits at the rightmost
  descendant on level D.
* A split compares one feature with one float32 threshold. Missing values follow the node's
  default direction; rather than testing NaN per node, each visitor's vector is expanded to
  ``2F + 1`` slots: slot ``f`` holds ``x[f]`` with NaN -> +inf (a missing value goes right) and
  slot ``F + f`` holds NaN -> -inf (goes left). A node reads slot ``f + F * default_left``;
  slot ``2F`` is a constant 0 used by the "always right" padding condition.
* XGBoost sends a row left when ``x < threshold``. Different trees reuse the same
  (slot, threshold) pair a lot (hist bins), so each pair is a numbered *condition*; a visitor's
  "goes right" bits for all distinct conditions are computed once, contiguously, and each level
  then needs two gathers: the node's condition id and that condition's bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Padded arrays grow as trees * 2**depth; deeper forests (lossguide) would need another layout.
MAX_DEPTH = 16
MAX_PADDED_LEAVES = 1 << 26
SIGMOID_OBJECTIVES = ("binary:logistic", "reg:logistic")


class ModelFormatError(ValueError):
    """A booster that this scorer cannot reproduce exactly (named product, reason)."""


@dataclass
class ParsedBooster:
    """The trees of one product's booster, as flat per-node arrays (tree-local ids)."""

    product_id: str
    base_margin: float
    tree_sizes: np.ndarray  # nodes per tree
    left: np.ndarray  # child ids, -1 for a leaf (tree-local)
    right: np.ndarray
    split_index: np.ndarray
    threshold: np.ndarray  # float32; for a leaf, the leaf value
    default_left: np.ndarray
    sum_hess: np.ndarray


@dataclass
class FlatForest:
    """All trees of all tree-model products, padded and level-ordered (see module docstring)."""

    n_features: int
    depth: int
    cond_slot: np.ndarray  # (U,) intp, sorted; slot of each distinct condition
    cond_thr: np.ndarray  # (U,) float32 threshold of each distinct condition
    slot_counts: np.ndarray  # (2F+1,) conditions per slot, for np.repeat
    cond: list[np.ndarray]  # per level l < depth: (T * 2**l,) condition ids
    leaf: np.ndarray  # (T * 2**depth,) float32 leaf values
    feature: list[np.ndarray]  # per level l < depth: split feature (F for padding)
    mean: list[np.ndarray]  # per level l <= depth: cover-weighted mean value (Saabas)
    tree_starts: np.ndarray  # (P_tree,) first tree of each product (trees are contiguous)
    base_margin: np.ndarray  # (P_tree,) float64

    @property
    def n_trees(self) -> int:
        return int(self.leaf.shape[0]) >> self.depth


def _parse_base_score(product_id: str, raw: str) -> float:
    # XGBoost 3.x writes a vector ("[5E-1]"), older versions a scalar ("5E-1").
    values = raw.strip().strip("[]").split(",")
    if len(values) != 1:
        raise ModelFormatError(
            f"product {product_id!r}: base_score {raw!r} has {len(values)} values; "
            "only single-output binary models are supported"
        )
    return float(values[0])


def parse_booster(product_id: str, booster, feature_names: Sequence[str]) -> ParsedBooster:
    """Read one xgboost.Booster through its JSON dump, refusing what we cannot reproduce."""
    n_features = len(feature_names)
    if booster.num_features() != n_features:
        raise ModelFormatError(
            f"product {product_id!r}: booster has {booster.num_features()} features, "
            f"feature_names has {n_features}"
        )
    names = booster.feature_names
    if names is not None and list(names) != list(feature_names):
        diff = next(i for i, (a, b) in enumerate(zip(names, feature_names, strict=True)) if a != b)
        raise ModelFormatError(
            f"product {product_id!r}: booster feature {diff} is {names[diff]!r}, "
            f"feature_names says {feature_names[diff]!r}"
        )
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective not in SIGMOID_OBJECTIVES:
        raise ModelFormatError(
            f"product {product_id!r}: objective {objective!r} is not a binary probability "
            f"model (supported: {', '.join(SIGMOID_OBJECTIVES)})"
        )
    booster_kind = learner["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        raise ModelFormatError(
            f"product {product_id!r}: booster type {booster_kind!r} is not supported "
            "(gbtree only; give linear models as LinearModel)"
        )
    params = learner["learner_model_param"]
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
        raise ModelFormatError(f"product {product_id!r}: multi-output models are not supported")
    base_score = _parse_base_score(product_id, params["base_score"])
    if not 0.0 < base_score < 1.0:
        raise ModelFormatError(f"product {product_id!r}: base_score {base_score} not in (0, 1)")
    # XGBoost turns the probability-space base_score into a margin in float32.
    b = np.float32(base_score)
    base_margin = float(-np.log(np.float32(1.0) / b - np.float32(1.0)))

    trees = learner["gradient_booster"]["model"]["trees"]
    if not trees:
        raise ModelFormatError(f"product {product_id!r}: booster has no trees")
    for t in trees:
        if any(t["split_type"]) or t["categories_nodes"]:
            raise ModelFormatError(
                f"product {product_id!r}: tree {t['id']} has categorical splits, not supported"
            )
        if int(t["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ModelFormatError(f"product {product_id!r}: vector-leaf trees are not supported")

    def cat(key: str, dtype) -> np.ndarray:
        return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trees])

    return ParsedBooster(
        product_id=product_id,
        base_margin=base_margin,
        tree_sizes=np.array([len(t["left_children"]) for t in trees], dtype=np.intp),
        left=cat("left_children", np.intp),
        right=cat("right_children", np.intp),
        split_index=cat("split_indices", np.intp),
        threshold=cat("split_conditions", np.float32),
        default_left=cat("default_left", np.intp),
        sum_hess=cat("sum_hessian", np.float64),
    )


def flatten(parsed: Sequence[ParsedBooster], n_features: int) -> FlatForest:
    """Merge the parsed boosters (in product order) into one padded, level-ordered forest."""
    F = n_features
    sizes = np.concatenate([p.tree_sizes for p in parsed])
    n_trees = sizes.shape[0]
    node_base = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tree_of_node = np.repeat(np.arange(n_trees), sizes)
    # tree-local child ids -> global node ids (leaves keep -1)
    offset = node_base[tree_of_node]
    left_local = np.concatenate([p.left for p in parsed])
    right_local = np.concatenate([p.right for p in parsed])
    is_leaf = left_local < 0
    left = np.where(is_leaf, -1, left_local + offset)
    right = np.where(is_leaf, -1, right_local + offset)
    split = np.concatenate([p.split_index for p in parsed])
    thr = np.concatenate([p.threshold for p in parsed])
    dleft = np.concatenate([p.default_left for p in parsed])
    hess = np.concatenate([p.sum_hess for p in parsed])
    if split.size and (split[~is_leaf].min(initial=0) < 0 or split[~is_leaf].max(initial=0) >= F):
        raise ModelFormatError("a tree splits on a feature index outside the feature vector")

    # Breadth-first walk of all trees at once: level and heap position of every node.
    levels: list[tuple[np.ndarray, np.ndarray]] = []  # (global node ids, positions)
    frontier, pos = node_base.copy(), np.zeros(n_trees, dtype=np.intp)
    while frontier.size:
        levels.append((frontier, pos))
        inner = ~is_leaf[frontier]
        parents, ppos = frontier[inner], pos[inner]
        frontier = np.concatenate([left[parents], right[parents]])
        pos = np.concatenate([2 * ppos, 2 * ppos + 1])
    depth = len(levels) - 1
    if depth > MAX_DEPTH or n_trees << depth > MAX_PADDED_LEAVES:
        raise ModelFormatError(
            f"trees of depth {depth} are too deep for the padded layout (max {MAX_DEPTH})"
        )

    # Distinct conditions; index 0.. sorted by (slot, threshold). The padding condition
    # (slot 2F holding 0, threshold -inf) always answers "go right".
    all_nodes = np.concatenate([nodes for nodes, _ in levels])
    inner_nodes = all_nodes[~is_leaf[all_nodes]]
    slots = np.concatenate([split[inner_nodes] + F * dleft[inner_nodes], [2 * F]])
    thrs = np.concatenate([thr[inner_nodes], [np.float32(-np.inf)]]).astype(np.float32)
    order = np.lexsort((thrs, slots))
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = (slots[order][1:] != slots[order][:-1]) | (thrs[order][1:] != thrs[order][:-1])
    cond_id_sorted = np.cumsum(keep) - 1
    cond_of = np.empty(order.size, dtype=np.intp)
    cond_of[order] = cond_id_sorted
    cond_slot = slots[order][keep].astype(np.intp)
    cond_thr = thrs[order][keep]
    n_cond = cond_slot.size
    always_right = cond_of[-1]
    node_cond = np.full(left.size, always_right, dtype=np.intp)
    node_cond[inner_nodes] = cond_of[:-1]
    # Small ids keep the per-level arrays cache-resident (measured: ~15% faster than intp).
    cond_dtype = np.uint16 if n_cond <= np.iinfo(np.uint16).max else np.uint32

    # Cover-weighted mean value of every node (XGBoost's approx_contribs / Saabas).
    mean = np.where(is_leaf, thr.astype(np.float64), 0.0)
    for nodes, _ in reversed(levels):
        inner = nodes[~is_leaf[nodes]]
        mean[inner] = (
            mean[left[inner]] * hess[left[inner]] + mean[right[inner]] * hess[right[inner]]
        ) / hess[inner]

    cond_levels, feat_levels, mean_levels = [], [], []
    for level in range(depth + 1):
        width = 1 << level
        mean_levels.append(np.zeros(n_trees * width, dtype=np.float32))
        if level < depth:
            cond_levels.append(np.full(n_trees * width, always_right, dtype=cond_dtype))
            feat_levels.append(np.full(n_trees * width, F, dtype=np.int32))
    leaf = np.zeros(n_trees << depth, dtype=np.float32)
    for level, (nodes, p) in enumerate(levels):
        t = tree_of_node[nodes]
        idx = (t << level) + p
        inner = ~is_leaf[nodes]
        if level < depth:
            cond_levels[level][idx[inner]] = node_cond[nodes[inner]]
            feat_levels[level][idx[inner]] = split[nodes[inner]]
        mean_levels[level][idx] = mean[nodes]
        # A leaf above the bottom walks down the rightmost path; keep its mean (zero
        # contribution) on every padded level and its value at the bottom.
        lt, lp, lv = t[~inner], p[~inner], thr[nodes[~inner]]
        for below in range(level + 1, depth + 1):
            shift = below - level
            pad_idx = (lt << below) + ((lp + 1) << shift) - 1
            mean_levels[below][pad_idx] = lv
        leaf[(lt << depth) + ((lp + 1) << (depth - level)) - 1] = lv

    trees_per_product = np.array([p.tree_sizes.size for p in parsed], dtype=np.intp)
    return FlatForest(
        n_features=F,
        depth=depth,
        cond_slot=cond_slot,
        cond_thr=cond_thr,
        slot_counts=np.bincount(cond_slot, minlength=2 * F + 1).astype(np.intp),
        cond=cond_levels,
        leaf=leaf,
        feature=feat_levels,
        mean=mean_levels,
        tree_starts=np.concatenate([[0], np.cumsum(trees_per_product)[:-1]]).astype(np.intp),
        base_margin=np.array([p.base_margin for p in parsed], dtype=np.float64),
    )
