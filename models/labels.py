"""Which customers count as positive for a product, and the time windows that keep labels honest.

- ``holdings``: the customer holds the product in the CRM version trained on. Features are
  taken as of the snapshot (the later of the CRM import and the last archived event).
- ``purchases``: the customer (through a visitor linked by ``identify``) bought the product in
  the label window, the last ``label_days`` of the archive. Web features are taken as of the
  start of that window, so the model learns from behaviour *before* the purchase, which is what
  serving sees.
- ``both``: either of the two (features as for ``purchases``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABEL_SOURCES = ("holdings", "purchases", "both")
DAY_S = 86_400


class LabelError(ValueError):
    """Labels cannot be built (unknown source, no events for purchase labels...)."""


@dataclass(frozen=True)
class LabelWindow:
    source: str
    as_of: float  # features are taken as of this time (epoch seconds)
    label_start: float | None  # purchases after this time count (None for holdings)
    label_end: float | None  # ... up to this time

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "as_of": self.as_of,
            "label_start": self.label_start,
            "label_end": self.label_end,
        }


def check_source(source: str) -> str:
    if source not in LABEL_SOURCES:
        raise LabelError(f"label source must be one of {', '.join(LABEL_SOURCES)}, not {source!r}")
    return source


def window(
    source: str, *, snapshot_time: float, last_event: float | None, label_days: int
) -> LabelWindow:
    """The feature time and label window for a source, given the data's own times."""
    check_source(source)
    if source == "holdings":
        return LabelWindow(source, max(snapshot_time, last_event or 0.0), None, None)
    if last_event is None:
        raise LabelError(
            f"label source {source!r} needs purchase events, but the tenant's event archive is "
            "empty (run the archiver, or train on holdings)"
        )
    if label_days < 1:
        raise LabelError("label_days must be at least 1")
    start = last_event - label_days * DAY_S
    return LabelWindow(source, start, start, last_event)


def combine(source: str, held: np.ndarray | None, bought: np.ndarray | None) -> np.ndarray:
    """(customers, products) bool labels of a source from holdings quantities / purchases."""
    check_source(source)
    parts = []
    if source in ("holdings", "both") and held is not None:
        parts.append(np.asarray(held) > 0)
    if source in ("purchases", "both") and bought is not None:
        parts.append(np.asarray(bought, dtype=bool))
    if not parts:
        raise LabelError(f"no data for label source {source!r}")
    out = parts[0].copy()
    for p in parts[1:]:
        out |= p
    return out
