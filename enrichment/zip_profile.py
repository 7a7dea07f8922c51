"""One ZIP -> the flat block stored on a visitor profile: geo, demographics, micro-segment.

The ingest path calls ``zip_profile`` on every ``zip`` event, so everything it reads is loaded
once per process (geo dicts, memory-mapped demographics and segment arrays) and re-checked at
most every few seconds for a newer version. Values are scalars (str, int, float, bool) so the
block can go straight into a Redis hash; missing values are None.

Keys:
- ``status``: ok (something is known about the code) / invalid / not_found / unavailable,
  with ``reason`` when not ok; ``geo_status`` is the geo lookup's own status.
- ``country``, ``postal_code`` (normalized), ``place``, ``state``, ``state_code``, ``county``,
  ``latitude``, ``longitude``.
- ``demo_status``: ok / fallback (figures of the nearest populated ZIP: ``fallback_from``,
  ``fallback_km``, ``fallback_reason``) / suppressed (small cell: segment only) / not_loaded /
  not_found / not_covered (no table for this country).
- ``demo_<figure>`` for every numeric figure of the table (see ``demographic_feature_names``)
  and ``demo_<category>`` for kept text categories (``demo_zip_type``); ``demo_version``.
- ``segment_status`` (ok / not_built / not_found / not_covered), ``segment_id``, ``segment_label``,
  ``segment_version``.
"""

from __future__ import annotations

from enrichment import geo
from enrichment.demographics import DemographicsTable, character_figures, demographics
from enrichment.segments import segmentation
from store.config import Settings

DEMO_PREFIX = "demo_"
# Countries the demographics table is keyed for.
DEMO_COUNTRIES = ("US",)


_keys_cache: dict[str, tuple[tuple[str, str], ...]] = {}


def _profile_keys(table: DemographicsTable) -> tuple[tuple[str, str], ...]:
    """(block key, figure name) pairs of a table version, built once."""
    keys = _keys_cache.get(table.version)
    if keys is None:
        keys = tuple((DEMO_PREFIX + n, n) for n in (*table.figures, *table.categories))
        _keys_cache[table.version] = keys
    return keys


def demographic_feature_names(settings: Settings) -> list[str]:
    """Profile-block keys of the figures the models learn from, in table order (empty when
    none loaded): those that say what a ZIP is like (``character_figures``, the segments'
    choice too), not how big it is.

    The feature builder reads these keys from the block (``demo_log_density``,
    ``demo_urban_share``, ...); a richer table adds its extra columns here automatically.
    """
    table = demographics(settings)
    if table is None:
        return []
    return [DEMO_PREFIX + name for name in character_figures(table.figures)]


def zip_profile(
    zip_code: str,
    country: str,
    settings: Settings,
    *,
    min_population: int | None = None,
) -> dict:
    """Geo + demographics + segment of a postal code; never raises on any input.

    ``min_population`` overrides the small-cell threshold the table was loaded with: a ZIP
    served from a ZCTA with fewer residents gets its segment but no ``demo_*`` figures.
    """
    block = geo.lookup(zip_code, country, settings)
    block["geo_status"] = block["status"]
    if block["status"] == geo.INVALID:
        return block
    cc, code = block["country"], block["postal_code"]
    if cc not in DEMO_COUNTRIES:
        block["demo_status"] = block["segment_status"] = "not_covered"
        return block

    table = demographics(settings)
    found = None
    if table is None:
        block["demo_status"] = "not_loaded"
    else:
        block["demo_version"] = table.version
        found = table.lookup(code)
        if found is None:
            block["demo_status"] = "not_found"
        else:
            threshold = table.min_population if min_population is None else min_population
            pop = found["population"]
            if pop is None or pop < threshold:
                block["demo_status"] = "suppressed"
            else:
                block["demo_status"] = "fallback" if "fallback_from" in found else "ok"
                for key in ("fallback_from", "fallback_km", "fallback_reason"):
                    if key in found:
                        block[key] = found[key]
                for key, name in _profile_keys(table):
                    block[key] = found[name]

    seg = segmentation(settings)
    if seg is None:
        block["segment_status"] = "not_built"
    else:
        block["segment_version"] = seg.version
        sid = seg.segment_of(code)
        if sid is None:
            block["segment_status"] = "not_found"
        else:
            block.update(segment_status="ok", segment_id=sid, segment_label=seg.labels[sid])

    known = found is not None or block.get("segment_id") is not None
    if known and block["status"] in (geo.NOT_FOUND, geo.UNAVAILABLE):
        # Known to the census table but not to GeoNames (a few ZCTAs, or no geo folder
        # configured): still a usable ZIP.
        block["status"] = geo.OK
        block.pop("reason", None)
    return block
