"""Exponentially time-decayed scores kept in Redis sorted sets without rewriting old entries.

Instead of decaying every stored score, each increment is scaled up by ``2 ** (age / half_life)``
measured from a fixed epoch; dividing by the current factor when reading gives the decayed
value. Relative order, which is what ranking needs, never requires the division. Doubles hold
the factor for about 1,000 half-lives (roughly 19 years at 7 days), far beyond any key's TTL.
"""

from __future__ import annotations

import time

EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z
HALF_LIFE_S = 7 * 24 * 3600


def growth(now_s: float | None = None, half_life_s: float = HALF_LIFE_S) -> float:
    now_s = time.time() if now_s is None else now_s
    return 2.0 ** ((now_s - EPOCH_S) / half_life_s)
