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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # serving loads neither at import; the loader passed in builds them
    from models.drift import LiveSample
    from models.fast_scorer import MultiProductScorer
    from models.features import FeatureBuilder

log = logging.getLogger("offerwise.serving")
RETRY_FAILED_LOAD_S = 30.0


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

    def explain(self, x: np.ndarray, top: int = 3) -> dict[str, list[dict]]:
        """Top features behind each product's score (tree path contributions)."""
        contrib = self.scorer.contributions(x)[:, :-1]
        names = self.builder.feature_names
        out = {}
        for i, pid in enumerate(self.product_ids):
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
