"""Real-time scoring with the tenant's champion model, switched without restart.

Each request reads the champion pointer in the round trip it makes anyway; when the pointer
moves, this process loads the new version's artifacts and swaps one reference. Requests in
flight keep the object they started with, and a version that fails to load leaves the previous
one serving (and is retried later), so a promotion never fails a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # serving loads neither at import; the loader passed in builds them
    from models.drift import LiveSample
    from models.fast_scorer import MultiProductScorer, Walk
    from models.features import FeatureBuilder

log = logging.getLogger("offerwise.serving")
RETRY_FAILED_LOAD_S = 30.0
REASON_GROUPS = ("crm", "holdings", "zip", "web")
# Web features that say how a visitor visits (page views, first and last seen), not what they
# looked at: a visitor who has only opened a page has browsed nothing, so these raise or lower
# scores without ever being told as "what you have been browsing".
VISIT_FEATURES = frozenset(
    {"web_log_n_page_view", "web_days_since_first_seen", "web_days_since_last_seen"}
)


@dataclass(frozen=True)
class Bundle:
    """What serving needs of one trained version."""

    version: str
    builder: FeatureBuilder
    scorer: MultiProductScorer  # calibration folded in by training
    # product -> the 99 percentiles of its holdout scores, highest first: score i is in the
    # top k% when it is at least cuts[k - 1] (campaign audiences, monitoring by decile).
    score_cuts: dict[str, list[float]] = field(default_factory=dict)
    # This process's sample of live feature vectors and served scores (models.drift); None
    # for versions trained before training distributions were kept.
    live: LiveSample | None = None
    # The anonymous visitors' model of the same version (models.anonymous): scores visitors
    # without CRM data on what they have (web behaviour, ZIP); None in versions without one.
    anonymous: Bundle | None = None

    def threshold_for_top(self, product_id: str, share: float) -> float | None:
        """The score above which a person is in the top ``share`` of the product's scores."""
        cuts = self.score_cuts.get(product_id)
        if not cuts:
            return None
        return cuts[min(len(cuts) - 1, max(0, round(share * 100) - 1))]

    def decile(self, product_id: str, score: float) -> int | None:
        """1 for the top 10% of the product's scores ... 10 for the bottom; None unknown."""
        cuts = self.score_cuts.get(product_id)
        if not cuts:
            return None
        for d in range(1, 10):
            if score >= cuts[d * 10 - 1]:
                return d
        return 10

    @property
    def product_ids(self) -> list[str]:
        return list(self.scorer.product_ids)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one per product, for one feature vector."""
        return self.scorer.score(x)

    def walk(self, x: np.ndarray) -> Walk:
        """The scores of one feature vector (``walk.scores``) with the tree paths that
        ``contributions`` reuses to explain a few of them."""
        return self.scorer.walk(x)

    def contributions(
        self, x: np.ndarray, products: Sequence[int] | None = None, walk: Walk | None = None
    ) -> np.ndarray:
        """Each product's per-feature contributions to its margin, (products, F + 1), with
        only the features the visitor has credited: a feature that is missing (NaN) or 0 (a
        presence flag, holding, view, level or count the visitor does not have) moves its
        share into the bias (the last column), so no explanation rests on what is absent.
        Rows still sum to the margins. ``products`` (positions in ``product_ids``) limits the
        rows to those, in that order; ``walk`` is ``x``'s, when it was scored already."""
        contrib = self.scorer.contributions(x, products, walk)
        absent = ~np.isfinite(x) | (x == 0)
        if absent.any():
            contrib[:, -1] += contrib[:, :-1][:, absent].sum(axis=1)
            contrib[:, :-1][:, absent] = 0.0
        return contrib

    @cached_property
    def _groups(self) -> tuple[list[str], np.ndarray]:
        """The reason groups and the (features, groups) 0/1 matrix that sums into them (the
        presence flags and the visit features in none)."""
        names = self.builder.feature_names
        kinds = self.builder.schema.group_of()
        of = [
            "holdings" if n.startswith("holds_") else "" if n in VISIT_FEATURES else k
            for n, k in zip(names, kinds, strict=True)
        ]
        groups = [g for g in REASON_GROUPS if g in of]
        matrix = np.zeros((len(names), len(groups)))
        for j, g in enumerate(of):
            if g in groups:
                matrix[j, groups.index(g)] = 1.0
        return groups, matrix

    def reason_groups(self, contrib: np.ndarray) -> list[str | None]:
        """Per product, the feature group that raised its score most (crm, holdings, zip,
        web), from ``contributions``; None when no group the visitor has raised it."""
        groups, matrix = self._groups
        return self._strongest(groups, contrib[:, :-1] @ matrix)

    def reasons(
        self, x: np.ndarray, products: Sequence[int], walk: Walk | None = None
    ) -> list[str | None]:
        """``reason_groups(contributions(x, products, walk))`` as serving asks it, without
        moving each absent feature's share into the bias first: the group sums leave out
        the features the visitor lacks, which is all that move would change here."""
        groups, matrix = self._groups
        contrib = self.scorer.contributions(x, products, walk)
        present = np.isfinite(x) & (x != 0)
        return self._strongest(groups, contrib[:, :-1] @ (matrix * present[:, None]))

    @staticmethod
    def _strongest(groups: list[str], sums: np.ndarray) -> list[str | None]:
        if not groups:
            return [None] * sums.shape[0]
        best = sums.argmax(axis=1)
        return [groups[b] if sums[i, b] > 0 else None for i, b in enumerate(best)]

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each product's position in ``product_ids`` (the scorer's rows)."""
        return {pid: i for i, pid in enumerate(self.scorer.product_ids)}

    def explain(
        self, x: np.ndarray, top: int = 3, products: Sequence[str] | None = None
    ) -> dict[str, list[dict]]:
        """Top features behind each product's score (tree path contributions, coef x value for
        linear models), only among the features the visitor has (see ``contributions``);
        for ``products`` (ids of this version's products) only, when given."""
        ids = self.product_ids if products is None else list(products)
        rows = None if products is None else [self.positions[p] for p in ids]
        contrib = self.contributions(x, rows)[:, :-1]
        names = self.builder.feature_names
        out = {}
        for i, pid in enumerate(ids):
            idx = np.argsort(-np.abs(contrib[i]))[:top]
            out[pid] = [
                {"feature": names[j], "contribution": round(float(contrib[i, j]), 5)}
                for j in idx
                if contrib[i, j] != 0
            ]
        return out


class ChampionCache:
    """Per-process champion bundles, keyed by tenant, loaded by ``loader(tenant, version)``."""

    def __init__(
        self,
        loader: Callable[[str, str], Bundle],
        on_load_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self._loader = loader
        # Staff must learn that the registry's champion is not what is served (a metric).
        self._on_load_failure = on_load_failure
        self._bundles: dict[str, Bundle] = {}
        self._failed: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str, version: str | None) -> Bundle | None:
        current = self._bundles.get(tenant)
        if version is None:
            return None
        if current is not None and current.version == version:
            return current
        if time.monotonic() < self._failed.get((tenant, version), 0.0):
            return current
        with self._lock:
            current = self._bundles.get(tenant)
            if current is not None and current.version == version:
                return current
            try:
                bundle = self._loader(tenant, version)
            except Exception:  # a broken artifact must not take serving down
                log.exception(
                    "could not load model %s of %s; serving the previous one", version, tenant
                )
                self._failed[(tenant, version)] = time.monotonic() + RETRY_FAILED_LOAD_S
                if self._on_load_failure is not None:
                    self._on_load_failure(tenant, version)
                return current
            self._bundles[tenant] = bundle
            return bundle
