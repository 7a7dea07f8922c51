"""What the feature vector holds: ``FeatureSchema``, fitted on training data and stored with
every model, and the names and constants that define the vector."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from models.features.values import _as_text_list, _to_numpy

FORMAT = "offerwise-feature-schema"
FORMAT_VERSION = 1

FLAGS = ("has_crm", "has_zip", "has_web")
GROUPS = ("crm", "holdings", "zip", "web")
# Event types whose profile counters become features (log1p of the count).
WEB_COUNTERS = ("page_view", "product_view", "search", "add_to_cart", "purchase", "offer_click")
WEB_SIZES = ("recent_count", "cart_count", "bought_count")
GEO_KEYS = ("latitude", "longitude")
OTHER = "_other"
# Categorical levels: the most frequent ones that cover at least this share / count of rows.
MAX_LEVELS = 12
MIN_LEVEL_SHARE = 0.005
MIN_LEVEL_COUNT = 10
MAX_SEGMENTS = 24
MAX_CATEGORIES = 30
_BAD_NAME_CHARS = re.compile(r"[\[\]<\s,]")

# Operations applied to numeric raw columns by the transform.
IDENTITY, LOG1P, DAYS_SINCE, YEARS_SINCE, INDICATOR = range(5)


class FeatureError(ValueError):
    """Bad schema or input columns; the message names the column and the reason."""


@dataclass
class FeatureSchema:
    """What the feature vector holds; fitted on training data, stored with every model.

    Everything the transform needs is here, so a model version carries its own definition
    of its inputs (a newer CRM extract, catalog or segmentation cannot silently shift them).
    """

    crm_numeric: list[str] = field(default_factory=list)  # numeric and boolean attributes
    crm_dates: list[str] = field(default_factory=list)
    crm_categorical: dict[str, list[str]] = field(default_factory=dict)  # attribute -> levels
    holdings: list[str] = field(default_factory=list)  # products with a holds_ feature
    demographic: list[str] = field(default_factory=list)  # zip block keys (demo_*)
    geo: list[str] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    segment_version: str | None = None
    demographics_version: str | None = None
    categories: list[str] = field(default_factory=list)  # web_aff_ features
    viewed: list[str] = field(default_factory=list)  # products with a web_viewed_ feature
    groups: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(GROUPS, False))
    crm_types: dict[str, str] = field(default_factory=dict)  # attribute -> CRM column type

    # ------------------------------------------------------------- names
    def _specs(self) -> list[tuple[str, str, str, int]]:
        """(feature name, raw key, group, op) for every scalar feature, in vector order;
        categorical blocks appear as one spec per level with op -1 (their raw key repeats)."""
        out: list[tuple[str, str, str, int]] = [(f, f, "", IDENTITY) for f in FLAGS]
        if self.groups.get("crm"):
            out += [(f"crm_{a}", f"crm.{a}", "crm", IDENTITY) for a in self.crm_numeric]
            out += [(f"crm_{a}_years", f"crm.{a}", "crm", YEARS_SINCE) for a in self.crm_dates]
            for a, levels in self.crm_categorical.items():
                out += [(f"crm_{a}={lv}", f"crm.{a}", "crm", -1) for lv in [*levels, OTHER]]
        if self.groups.get("holdings"):
            out += [(f"holds_{p}", f"hold.{p}", "crm", INDICATOR) for p in self.holdings]
        if self.groups.get("zip"):
            out += [(d, f"zip.{d}", "zip", IDENTITY) for d in self.demographic]
            out += [(f"zip_{g}", f"zip.{g}", "zip", IDENTITY) for g in self.geo]
            if self.segments:
                levels = [*map(str, self.segments), OTHER]
                out += [(f"segment={s}", "zip.segment_id", "zip", -1) for s in levels]
        if self.groups.get("web"):
            out += [(f"web_log_n_{t}", f"web.n_{t}", "web", LOG1P) for t in WEB_COUNTERS]
            out += [
                ("web_days_since_last_seen", "web.last_seen", "web", DAYS_SINCE),
                ("web_days_since_first_seen", "web.first_seen", "web", DAYS_SINCE),
            ]
            out += [(f"web_{s}", f"web.{s}", "web", IDENTITY) for s in WEB_SIZES]
            out += [(f"web_aff_{c}", f"web.aff.{c}", "web", IDENTITY) for c in self.categories]
            out += [(f"web_viewed_{p}", f"web.viewed.{p}", "web", IDENTITY) for p in self.viewed]
        return out

    @property
    def feature_names(self) -> list[str]:
        """Unique names safe for XGBoost (no '[', ']', '<', blanks or commas)."""
        names, seen = [], set()
        for name, *_ in self._specs():
            clean = _BAD_NAME_CHARS.sub("_", name)
            candidate, k = clean, 2
            while candidate in seen:
                candidate, k = f"{clean}~{k}", k + 1
            seen.add(candidate)
            names.append(candidate)
        return names

    @property
    def n_features(self) -> int:
        return len(self._specs())

    def group_of(self) -> list[str]:
        """Group of each feature ('' for the presence flags), in vector order."""
        return [g for _, _, g, _ in self._specs()]

    # ------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        data = asdict(self)
        data["segments"] = [int(s) for s in self.segments]
        return {"format": FORMAT, "version": FORMAT_VERSION, **data,
                "feature_names": self.feature_names}  # fmt: skip

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        if data.get("format") != FORMAT:
            raise FeatureError(f"not a feature schema (format {data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise FeatureError(
                f"feature schema version {data.get('version')} is not supported "
                f"(this code reads version {FORMAT_VERSION})"
            )
        names = {f for f in cls.__dataclass_fields__}
        schema = cls(**{k: v for k, v in data.items() if k in names})
        schema.groups = {g: bool(schema.groups.get(g)) for g in GROUPS}
        stored = data.get("feature_names")
        if stored is not None and list(stored) != schema.feature_names:
            raise FeatureError(
                "feature schema is inconsistent: its stored feature names differ from the ones "
                "its lists define (edited by hand, or written by other code)"
            )
        return schema

    @classmethod
    def from_json(cls, raw: bytes | str) -> FeatureSchema:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise FeatureError(f"feature schema is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise FeatureError("feature schema JSON must be an object")
        return cls.from_dict(data)

    # ------------------------------------------------------------- fitting
    def fit_levels(
        self,
        columns: Mapping[str, Any],
        *,
        max_levels: int = MAX_LEVELS,
        max_segments: int = MAX_SEGMENTS,
    ) -> FeatureSchema:
        """Choose the one-hot levels of categorical attributes and segments from training rows.

        A level is kept when it is among the ``max_levels`` most frequent and covers at least
        ``MIN_LEVEL_SHARE`` of the known values (and ``MIN_LEVEL_COUNT`` rows); all others share
        the ``_other`` column. Returns self.
        """
        for a in list(self.crm_categorical):
            values = _as_text_list(columns.get(f"crm.{a}"))
            self.crm_categorical[a] = _top_levels(values, max_levels)
        if self.groups.get("zip"):
            seg = columns.get("zip.segment_id")
            ids: list[object] = []
            if seg is not None:
                arr = np.asarray(_to_numpy(seg), dtype=np.float64)
                ids = [int(v) for v in arr[np.isfinite(arr)]]
            self.segments = sorted(int(s) for s in _top_levels(ids, max_segments))
        return self


def _top_levels(values: Sequence[object], k: int) -> list:
    known = [v for v in values if v is not None]
    if not known:
        return []
    uniq, counts = np.unique(np.asarray(known, dtype=object), return_counts=True)
    floor = max(MIN_LEVEL_COUNT, MIN_LEVEL_SHARE * len(known))
    order = sorted(
        zip(counts.tolist(), uniq.tolist(), strict=True), key=lambda t: (-t[0], str(t[1]))
    )
    return [v for c, v in order[:k] if c >= floor]
