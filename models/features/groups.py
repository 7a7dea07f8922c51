"""The ZIP and web groups of the raw columns: ``zip_raw`` (one ZIP block), ``ZipLookup`` (a
column of ZIP codes, one ``zip_profile`` per distinct code) and ``web_raw_from_profile`` (a live
visitor profile)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickstream.profiles import VisitorProfile
from enrichment.zip_profile import zip_profile
from models.features.schema import WEB_COUNTERS, FeatureSchema
from models.features.values import _NAN, _number
from store.config import Settings


def zip_raw(block: Mapping[str, Any] | None, schema: FeatureSchema) -> dict[str, list[float]]:
    """Raw ZIP columns (one row) from a ``zip_profile`` block, typed or as stored on a profile.

    The block is known when its status is ok. A segment id from a segmentation other than the
    one the schema was fitted on means nothing to the model, so it is dropped (NaN).
    """
    if not block or block.get("status") != "ok":
        return {"has_zip": [0.0]}
    out: dict[str, list[float]] = {"has_zip": [1.0]}
    for key in schema.demographic:
        out[f"zip.{key}"] = [_number(block.get(key))]
    for key in schema.geo:
        out[f"zip.{key}"] = [_number(block.get(key))]
    seg = _number(block.get("segment_id"))
    if (
        schema.segment_version is not None
        and block.get("segment_version") != schema.segment_version
    ):
        seg = _NAN
    out["zip.segment_id"] = [seg]
    return out


class ZipLookup:
    """ZIP -> profile block, cached per distinct ZIP; batch columns through ``zip_raw``."""

    def __init__(self, settings: Settings, country: str = "US") -> None:
        self.settings = settings
        self.country = country
        self._blocks: dict[str, dict] = {}

    def block(self, zip_code: str | None) -> dict | None:
        if not zip_code:
            return None
        found = self._blocks.get(zip_code)
        if found is None:
            found = zip_profile(zip_code, self.country, self.settings)
            if len(self._blocks) > 200_000:
                self._blocks.clear()
            self._blocks[zip_code] = found
        return found

    def columns(self, zips: Any, schema: FeatureSchema) -> dict[str, np.ndarray]:
        """Raw ZIP columns for an array of ZIP codes (one ``zip_profile`` per distinct code)."""
        arr = (
            zips
            if isinstance(zips, pa.ChunkedArray | pa.Array)
            else pa.array(list(zips), pa.string())
        )
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not pa.types.is_string(arr.type):
            arr = pc.cast(arr, pa.string())
        encoded = arr.dictionary_encode()
        uniques = encoded.dictionary.to_pylist()
        rows = [zip_raw(self.block(z), schema) for z in uniques] + [{"has_zip": [0.0]}]
        index = encoded.indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
        keys = [
            "has_zip",
            *(f"zip.{k}" for k in (*schema.demographic, *schema.geo)),
            "zip.segment_id",
        ]
        out = {}
        for key in keys:
            table = np.array([row.get(key, [_NAN])[0] for row in rows], dtype=np.float64)
            if key == "has_zip":
                table = np.nan_to_num(table)
            out[key] = table[index]
        return out


def zip_block_for(
    profile: VisitorProfile | None,
    customer: Mapping[str, Any] | None,
    zips: ZipLookup,
) -> Mapping[str, Any] | None:
    """The ZIP block serving should use: an identified customer's CRM ZIP (what training saw
    for that customer), else the ZIP the visitor typed (stored on the profile), else None."""
    if customer is not None and customer.get("zip"):
        block = zips.block(customer["zip"])
        if block is not None and block.get("status") == "ok":
            return block
    return profile.zip_block() if profile is not None else None


def web_raw_from_profile(profile: VisitorProfile, schema: FeatureSchema) -> dict[str, list[float]]:
    """Raw web columns (one row) of a live visitor profile."""
    counters = profile.counters
    attrs = profile.attributes
    out: dict[str, list[float]] = {"has_web": [1.0]}
    for t in WEB_COUNTERS:
        out[f"web.n_{t}"] = [float(counters.get(t, 0))]
    out["web.first_seen"] = [_number(attrs.get("first_seen"))]
    out["web.last_seen"] = [_number(attrs.get("last_seen"))]
    out["web.recent_count"] = [float(len(profile.recent))]
    out["web.cart_count"] = [float(len(profile.cart))]
    out["web.bought_count"] = [float(len(profile.recently_bought))]
    aff = profile.affinities
    for c in schema.categories:
        out[f"web.aff.{c}"] = [float(aff.get(c, 0.0))]
    if schema.viewed:
        recent = set(profile.recent)
        for p in schema.viewed:
            out[f"web.viewed.{p}"] = [1.0 if p in recent else 0.0]
    return out
