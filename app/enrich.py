"""Wires ZIP enrichment into ingest (clickstream may not import its sibling, enrichment)."""

from __future__ import annotations

from enrichment.zip_profile import zip_profile
from store.config import Settings


def zip_block(zip_code: str, country: str, settings: Settings) -> dict:
    """The profile block for a volunteered ZIP: geo, demographics, segment (scalar values)."""
    block = zip_profile(zip_code, country, settings)
    return {k: v for k, v in block.items() if isinstance(v, str | int | float | bool)}
