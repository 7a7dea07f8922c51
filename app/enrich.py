"""Wires ZIP enrichment into ingest (clickstream may not import its sibling, enrichment)."""

from __future__ import annotations

from app.services import services
from enrichment.zip_profile import zip_profile


def zip_block(zip_code: str, country: str) -> dict:
    """The profile block for a volunteered ZIP: geo, demographics, segment (scalar values)."""
    block = zip_profile(zip_code, country, services().settings)
    return {k: v for k, v in block.items() if isinstance(v, str | int | float | bool)}
