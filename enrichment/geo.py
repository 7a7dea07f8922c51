"""Postal code -> place, state, county and coordinates, offline.

The GeoNames postal-code files are read through pgeocode from ``settings.geo_dir`` (the cache
format pgeocode itself writes, ``XX.txt``). pgeocode downloads a missing country on first use;
a request path must never do that, so a country whose file is absent is answered with
status ``unavailable`` and pgeocode is only ever pointed at files that exist, with its download
list emptied while it reads.

pgeocode answers one query in about a millisecond (a pandas merge); the ingest path calls this
on every ``zip`` event, so each country's file is read once per process into a plain dict keyed
by the normalized code, and a lookup is a dict get.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from store.config import Settings

OK = "ok"
INVALID = "invalid"
NOT_FOUND = "not_found"
UNAVAILABLE = "unavailable"
STATUSES = (OK, INVALID, NOT_FOUND, UNAVAILABLE)

# Longer input is not a postal code in any country; refusing it early bounds the work done on
# hostile input.
MAX_INPUT_LEN = 16
# Distinct place names kept for a code shared by several places (DE and AT codes cover up to
# dozens of villages; the profile needs a readable name, not the whole list).
MAX_PLACE_NAMES = 3

COUNTRY_ALIASES = {"UK": "GB"}

_US = re.compile(r"(\d{3,5})(?:[- ]?(\d{4}))?")
_CA = re.compile(r"([A-Z]\d[A-Z])(?: ?\d[A-Z]\d)?")
_GB_OUTWARD = re.compile(r"[A-Z]{1,2}\d[A-Z\d]?")
_GB_INWARD = re.compile(r"\d[A-Z]{2}")
_NL = re.compile(r"(\d{4})(?: ?[A-Z]{2})?")
_GENERIC = re.compile(r"[A-Z0-9](?:[A-Z0-9 -]{0,10}[A-Z0-9])?")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Place:
    postal_code: str
    place: str | None
    state: str | None
    state_code: str | None
    county: str | None
    latitude: float | None
    longitude: float | None


class GeoError(ValueError):
    """A postal code or country that cannot be looked up; ``status`` says why."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def normalize_country(country: object) -> str:
    """Two-letter upper-case code (``uk`` -> ``GB``); raises GeoError(INVALID) otherwise."""
    if not isinstance(country, str):
        raise GeoError(INVALID, "country must be a two-letter code")
    code = country.strip().upper()
    code = COUNTRY_ALIASES.get(code, code)
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        raise GeoError(INVALID, f"country {country!r} is not a two-letter code")
    return code


def normalize_postal_code(code: object, country: str) -> str:
    """The form GeoNames uses for ``country``; raises GeoError(INVALID) naming the problem.

    US: ZIP+4 and 9-digit forms keep the 5-digit ZIP; 3-4 digit codes are zero-padded because
    spreadsheets strip the leading zeros of New England and Puerto Rico ZIPs (no US ZIP is
    shorter than 5 digits, so the padding cannot pick a different ZIP). GB/CA: GeoNames has
    outward codes only, so the inward part is dropped. NL: GeoNames has the 4 digits only.
    """
    if (
        country == "US"
        and isinstance(code, str)
        and len(code) == 5
        and code.isascii()
        and code.isdigit()
    ):
        return code  # the common case, without the regex
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(code, str):
        raise GeoError(INVALID, "postal code must be text")
    text = _SPACES.sub(" ", code.strip().upper())
    if not text:
        raise GeoError(INVALID, "postal code is empty")
    if len(text) > MAX_INPUT_LEN:
        raise GeoError(INVALID, f"postal code longer than {MAX_INPUT_LEN} characters")
    if not text.isascii():
        raise GeoError(INVALID, "postal code has non-ASCII characters")
    for prefix in (f"{country}-", f"{country} "):  # "DE-10115" as written on letters
        if text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix) :].strip()
    if country == "US":
        m = _US.fullmatch(text)
        if not m or (m.group(2) and len(m.group(1)) != 5):
            raise GeoError(INVALID, "US ZIP code must be 5 digits (or ZIP+4)")
        return m.group(1).zfill(5)
    if country == "CA":
        m = _CA.fullmatch(text)
        if not m:
            raise GeoError(INVALID, "Canadian postal code must look like 'K1A 0B1' or 'K1A'")
        return m.group(1)
    if country in ("GB", "IE"):
        parts = text.split(" ")
        if len(parts) == 2 and _GB_INWARD.fullmatch(parts[1]):
            outward = parts[0]
        elif len(parts) == 1 and len(text) >= 5 and _GB_INWARD.fullmatch(text[-3:]):
            outward = text[:-3]
        elif len(parts) == 1:
            outward = text
        else:
            raise GeoError(INVALID, "postal code must be 'outward inward', e.g. 'SW1A 1AA'")
        if country == "GB" and not _GB_OUTWARD.fullmatch(outward):
            raise GeoError(INVALID, f"{outward!r} is not a UK outward code (e.g. 'SW1A', 'M9')")
        return outward
    if country == "NL":
        m = _NL.fullmatch(text)
        if not m:
            raise GeoError(INVALID, "Dutch postal code must look like '1012 AB' or '1012'")
        return m.group(1)
    if not _GENERIC.fullmatch(text):
        raise GeoError(INVALID, "postal code may only hold letters, digits, spaces and '-'")
    return text


# --- loading ---------------------------------------------------------------------------------

_lock = threading.Lock()
_indexes: dict[tuple[Path, str], dict[str, Place] | None] = {}


def country_file(geo_dir: Path, country: str) -> Path:
    return geo_dir / f"{country}.txt"


def available_countries(settings: Settings) -> list[str]:
    """Countries whose GeoNames file is present in the configured folder."""
    geo_dir = settings.geo_dir
    if geo_dir is None or not geo_dir.is_dir():
        return []
    return sorted(
        p.stem
        for p in geo_dir.glob("*.txt")
        if len(p.stem) == 2 and p.stem.isalpha() and p.stem.isupper()
    )


@contextlib.contextmanager
def _offline_pgeocode(geo_dir: Path) -> Iterator[ModuleType]:
    """pgeocode pointed at ``geo_dir`` with downloading made impossible (it would raise)."""
    import pgeocode

    saved = pgeocode.STORAGE_DIR, pgeocode.DOWNLOAD_URL
    pgeocode.STORAGE_DIR, pgeocode.DOWNLOAD_URL = str(geo_dir), []
    try:
        yield pgeocode
    finally:
        pgeocode.STORAGE_DIR, pgeocode.DOWNLOAD_URL = saved


def _text(value: object) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, float) and math.isfinite(value):
        # pandas reads numeric-looking code columns (county_code) as floats: "61.0" -> "61".
        return str(int(value)) if value.is_integer() else str(value)
    return None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _build_index(geo_dir: Path, country: str) -> dict[str, Place]:
    """Read one country's file through pgeocode and merge rows that share a code.

    The merge matches pgeocode's own unique index (mean coordinates, first state and county,
    place names joined) but is built here so that nothing is written beside a possibly
    read-only data folder and so that lookups are dict gets.
    """
    with _offline_pgeocode(geo_dir) as pgeocode:
        data = pgeocode.Nominatim(country, unique=False)._data  # reads XX.txt only
    data = data[data["postal_code"].notna()]
    codes = data["postal_code"].astype(str).str.strip().str.upper()
    grouped: dict[str, list[int]] = {}
    for i, code in enumerate(codes):
        grouped.setdefault(code, []).append(i)
    place = data["place_name"].tolist()
    state, state_code = data["state_name"].tolist(), data["state_code"].tolist()
    county = data["county_name"].tolist()
    lat, lon = data["latitude"].tolist(), data["longitude"].tolist()
    index: dict[str, Place] = {}
    for code, rows in grouped.items():
        names = list(dict.fromkeys(n for n in (_text(place[i]) for i in rows) if n))
        name = ", ".join(names[:MAX_PLACE_NAMES]) + (
            f" +{len(names) - MAX_PLACE_NAMES} more" if len(names) > MAX_PLACE_NAMES else ""
        )
        lats = [v for v in (_number(lat[i]) for i in rows) if v is not None]
        lons = [v for v in (_number(lon[i]) for i in rows) if v is not None]
        first = rows[0]
        index[code] = Place(
            postal_code=code,
            place=name or None,
            state=_text(state[first]),
            state_code=_text(state_code[first]),
            county=_text(county[first]),
            latitude=round(sum(lats) / len(lats), 5) if lats else None,
            longitude=round(sum(lons) / len(lons), 5) if lons else None,
        )
    return index


def country_index(country: str, settings: Settings) -> dict[str, Place]:
    """The cached code -> Place dict of one country; raises GeoError when it cannot be had."""
    geo_dir = settings.geo_dir
    if geo_dir is None:
        raise GeoError(UNAVAILABLE, "no postal-code data folder configured (set OFFERWISE_GEO_DIR)")
    key = (geo_dir, country)
    index = _indexes.get(key)
    if index is None and key not in _indexes:
        with _lock:
            if key not in _indexes:
                import pgeocode

                if country not in pgeocode.COUNTRIES_VALID:
                    _indexes[key] = None
                elif country_file(geo_dir, country).is_file():
                    _indexes[key] = _build_index(geo_dir, country)
                else:  # not cached: the file may be added later
                    raise GeoError(
                        UNAVAILABLE, f"country not available: no postal-code file for {country}"
                    )
            index = _indexes[key]
    if index is None:
        raise GeoError(INVALID, f"country {country!r} has no postal-code data in GeoNames")
    return index


def reset_cache() -> None:
    """Forget loaded countries (tests, or after the data folder was refreshed)."""
    with _lock:
        _indexes.clear()


def place_for(code: object, country: object, settings: Settings) -> Place:
    """The Place of a postal code; raises GeoError (status invalid/not_found/unavailable)."""
    cc = normalize_country(country)
    normalized = normalize_postal_code(code, cc)
    place = country_index(cc, settings).get(normalized)
    if place is None:
        raise GeoError(NOT_FOUND, f"postal code {normalized} not found for {cc}")
    return place


def lookup(code: object, country: object, settings: Settings) -> dict:
    """Geo facts of a postal code as a flat dict; never raises on any input.

    ``status`` is one of ok / invalid / not_found / unavailable; ``reason`` explains anything
    but ok. ``postal_code`` is the normalized code whenever the input could be normalized.
    """
    out: dict[str, object] = {"status": OK, "country": None, "postal_code": None}
    try:
        cc = normalize_country(country)
        out["country"] = cc
        normalized = normalize_postal_code(code, cc)
        out["postal_code"] = normalized
        place = country_index(cc, settings).get(normalized)
        if place is None:
            raise GeoError(NOT_FOUND, f"postal code {normalized} not found for {cc}")
    except GeoError as err:
        out["status"], out["reason"] = err.status, err.reason
        return out
    except Exception as err:  # a damaged data file must not break ingest
        out["status"], out["reason"] = UNAVAILABLE, f"postal-code data unreadable: {err}"
        return out
    out.update(
        place=place.place,
        state=place.state,
        state_code=place.state_code,
        county=place.county,
        latitude=place.latitude,
        longitude=place.longitude,
    )
    return out
