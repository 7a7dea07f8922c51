"""US ZIP demographics: load a ZIP-keyed census table once, serve figures per ZIP in microseconds.

``load_demographics`` turns a CSV/Parquet table (one row per 5-digit ZIP) into a versioned
artifact folder under ``<data dir>/artifacts/demographics/<version>/``:

- ``values.npy``       float64 (rows x figures): every numeric column as it comes, plus derived
                       figures; missing or non-finite values are NaN.
- ``categorical.npy``  int16 codes of low-cardinality text columns (``zip_type``, ``state``).
- ``zips.npy``         int32 ZIP of each row.
- ``own.npy``/``source.npy``/``km.npy``: arrays indexed by the ZIP as an integer (0..99999):
                       the ZIP's own row, the row whose figures it is served, and the distance to
                       it. A ZIP without residents of its own (PO box, unique ZIP) or missing from
                       the table (but known to GeoNames) points at the nearest ZIP with at least
                       ``min_population`` residents, so that choice is made once, at load time.
- ``meta.json``        columns, derived figures, categories, counts and the load report.

A ``CURRENT`` file names the live version; it is replaced atomically, so readers never see a
half-written table. Readers memory-map the arrays: every gunicorn worker shares the same page
cache pages, and a lookup is a few array reads.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from enrichment import geo
from store.artifacts import ARTIFACTS, ArtifactStore, artifacts_for, join_key
from store.config import Settings

ARTIFACT_FORMAT = 1
N_ZIPS = 100_000
# A ZCTA with fewer residents than Settings.small_cell_min is a small cell: its own figures are
# not served (privacy, and ratios over a handful of people are noise). Fallbacks only ever
# point at ZIPs above it.
# Text columns with at most this many distinct values are kept as categories; others (city
# names) are dropped because the geo lookup already names the place.
MAX_CATEGORIES = 64
# A column is numeric when this share of its non-empty cells parses as a number; the rest are
# reported and stored as missing (ACS tables mark suppressed cells with '-', '**', '(X)').
NUMERIC_SHARE = 0.9
# A table centroid further than this from the GeoNames point of the same ZIP is taken as wrong.
CENTROID_TOLERANCE_KM = 100.0
# Beyond this the nearest populated ZIP says nothing about the place (APO/FPO military ZIPs sit
# at bases abroad, Pacific islands thousands of km from Hawaii): such ZIPs get no figures.
FALLBACK_MAX_KM = 80.0
KEEP_VERSIONS = 5
MAX_ISSUES = 50

# Figures that measure how big a ZCTA is (its residents, homes, area) rather than what living
# there is like: neither clustered into segments nor given to the models, where a raw size
# identifies single ZIPs (a tree learns "land area 31.2 sq mi" from a handful of people)
# instead of carrying a taste that holds for the ZIPs like it.
SIZE_FIGURES = {"population", "housing_units", "land_area_sqmi", "water_area_sqmi"}
SIZE_PREFIXES = ("total_", "count_", "n_")
SIZE_SUFFIXES = ("_count", "_total")
# A figure a better one replaces when the table has both: ACS median household income (this
# decade, per household) over the 2010 IRS-derived wages per resident, which correlate at only
# 0.07 across the shared table's ZIPs and would let a label say "high wages" and "low household
# incomes" at once.
SUPERSEDED_BY = {"wages_per_resident_usd": "median_household_income_usd"}


def character_figures(figures: Sequence[str]) -> list[str]:
    """The figures, in order, that say what a ZIP is like (ratios, shares, per-resident and
    per-household values): sizes and counts out, the raw density where its log form exists,
    and a figure a better one supersedes."""
    names = set(figures)
    return [
        name
        for name in figures
        if name not in SIZE_FIGURES
        and not name.startswith(SIZE_PREFIXES)
        and not name.endswith(SIZE_SUFFIXES)
        and not (name == "density_per_sqmi" and "log_density" in names)
        and SUPERSEDED_BY.get(name) not in names
    ]


KEY_CANDIDATES = ("zip", "zcta", "zcta5", "zip_code", "zipcode", "postal_code", "geoid", "geo_id")
COORD_CANDIDATES = (
    ("latitude", "longitude"),
    ("lat", "lon"),
    ("lat", "lng"),
    ("intptlat", "intptlong"),
)
MISSING_TOKENS = {"", "-", "--", "*", "**", "***", "(x)", "n", "na", "n/a", "nan", "null", "none"}
_NUMBER_NOISE = re.compile(r"[,$%\s]|(?<=\d)[+-]$")
# ACS medians code the open ends of their range with a number just past the end (README "Data"):
# median household income (table B19013) 250001 for "250,000 or more" and 2499 for "under
# 2,500", median home value (B25077) 2000001 and 9999. A code is served as the bound it stands
# for, as the text forms "250,000+" and "2,500-" already parse: 250,000 is a lower bound, the
# best single figure the survey gives for that ZIP. Columns are matched by name, so a table's
# own 2499 in any other column stays 2499.
RANGE_CODES: tuple[tuple[tuple[str, ...], dict[float, tuple[str, float]]], ...] = (
    (("median", "income"), {250001.0: ("at least", 250000.0), 2499.0: ("under", 2500.0)}),
    (("median", "home_value"), {2000001.0: ("at least", 2e6), 9999.0: ("under", 10000.0)}),
)
# The Census API's annotation values (-666666666: no estimate, -999999999, -888888888, ...):
# never a figure.
JAM_VALUE_MAX = -111111111.0
_ZIP_TAIL = re.compile(r"(?:^|\D)(\d{5})")
EARTH_RADIUS_KM = 6371.0088


class DemographicsError(ValueError):
    """A table that cannot be loaded; the message names the file, column or row and why."""


# --- versioned artifact folders (shared with segments) --------------------------------------

POINTER = "CURRENT"
META = "meta.json"


def _current(store: ArtifactStore, prefix: str) -> str | None:
    version = store.read_pointer(join_key(prefix, POINTER))
    return version if version and store.exists(join_key(prefix, version, META)) else None


def publish_to(
    store: ArtifactStore, prefix: str, build: Callable[[Path], str], keep: int = KEEP_VERSIONS
) -> str:
    """Build into a staging folder, publish it as its version, then repoint CURRENT.

    ``build(folder)`` writes the files and returns the version id. Older versions beyond
    ``keep`` are removed (a worker that still maps one keeps its pages until it re-opens).
    """
    with store.staging(prefix) as staged:
        version = build(staged.path)
        if not store.exists(join_key(prefix, version, META)):  # else: built before, reuse it
            if store.exists(join_key(prefix, version)):  # leftover of an interrupted publish
                store.delete(join_key(prefix, version))
            store.publish(staged, version)
    store.set_pointer(join_key(prefix, POINTER), version)
    store.prune(prefix, keep, protect={version})
    return version


T = TypeVar("T")


class CurrentArtifact(Generic[T]):
    """The live version of an artifact, opened once per process and per data dir.

    The CURRENT pointer is re-read at most every ``check_every`` seconds, so a long-running
    worker picks up a new version without a restart and a lookup costs no system call.
    """

    def __init__(self, subdir: str, opener: Callable[[Path], T], check_every: float = 5.0) -> None:
        self.subdir = subdir
        self.opener = opener
        self.check_every = check_every
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[float, str | None, T | None]] = {}

    def root(self, settings: Settings) -> Path:
        return settings.artifacts_dir / self.subdir

    def prefix(self) -> str:
        return join_key(ARTIFACTS, self.subdir)

    def get(self, settings: Settings) -> T | None:
        # Keyed by the data dir object itself: building paths costs more than the lookup.
        key = settings.data_dir
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and now - entry[0] < self.check_every:
            return entry[2]
        with self._lock:
            store, prefix = artifacts_for(settings), self.prefix()
            version = _current(store, prefix)
            if entry is not None and entry[1] == version:
                self._entries[key] = (now, version, entry[2])
                return entry[2]
            # Memory-mapped arrays need a real file: local_path gives the file itself, or with an
            # object store a local cached copy of the published (never changing) version.
            value = self.opener(store.local_path(join_key(prefix, version))) if version else None
            self._entries[key] = (now, version, value)
            return value

    def invalidate(self) -> None:
        with self._lock:
            self._entries.clear()


# --- reading the table ----------------------------------------------------------------------


def _decode(raw: bytes, path: Path) -> tuple[str, str]:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"  # every byte string decodes as latin-1


def _na_tokens() -> list[str]:
    return sorted({v for t in MISSING_TOKENS if t for v in (t, t.upper(), t.title())})


def read_table(path: Path, key_column: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The table with column names lower-cased and stripped.

    Key-like columns are read as text so that leading zeros survive; pandas' C parser types
    the rest (fast); columns it leaves as text are parsed again by ``_parse_numeric``.
    """
    if not path.is_file():
        raise DemographicsError(f"{path}: file not found")
    info: dict[str, object] = {"file": path.name}
    key_names = {*KEY_CANDIDATES, (key_column or "").strip().lower()}
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:
            raise DemographicsError(f"{path.name}: not a readable Parquet file ({err})") from err
        for column in frame.columns:
            if str(column).strip().lower() in key_names:
                frame[column] = frame[column].astype(str)
        info["format"] = "parquet"
    else:
        raw = path.read_bytes()
        if not raw.strip():
            raise DemographicsError(f"{path.name}: file is empty")
        text, encoding = _decode(raw, path)
        try:
            delimiter = csv.Sniffer().sniff(text[:65536].split("\n", 1)[0], ",;\t|").delimiter
        except csv.Error:
            delimiter = ","
        try:
            header = pd.read_csv(io.StringIO(text), sep=delimiter, nrows=0).columns
            frame = pd.read_csv(
                io.StringIO(text),
                sep=delimiter,
                dtype={c: str for c in header if str(c).strip().lower() in key_names},
                keep_default_na=False,
                na_values=_na_tokens(),
                low_memory=False,  # type each column over all its rows, not per chunk
            )
        except Exception as err:
            raise DemographicsError(f"{path.name}: not a readable CSV file ({err})") from err
        info.update(format="csv", encoding=encoding, delimiter=delimiter)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise DemographicsError(f"{path.name}: duplicate column names {dupes}")
    if frame.empty:
        raise DemographicsError(f"{path.name}: header but no data rows")
    return frame, info


def normalize_zip_key(value: str) -> str | None:
    """ZIP from a table key: '00601', '601' (leading zeros lost), '8600000US00601' (ACS GEO_ID)."""
    text = value.strip()
    if text.isdigit() and 3 <= len(text) <= 5:
        return text.zfill(5)
    if text.endswith(".0") and text[:-2].isdigit() and len(text) <= 7:  # read as float upstream
        return text[:-2].zfill(5)
    match = _ZIP_TAIL.search(text)
    return match.group(1) if match and match.end() == len(text) else None


def _parse_numeric(column: pd.Series) -> tuple[np.ndarray, int, int]:
    """(values, non-empty cells, cells that did not parse)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        return values, int(column.notna().sum()), 0
    text = column.fillna("").astype(str).str.strip()
    empty = text.str.lower().isin(MISSING_TOKENS).to_numpy()
    values = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(
        dtype=np.float64, copy=True
    )
    retry = np.isnan(values) & ~empty
    # "250,000+", "$1,200", "45%": cleaned by a regex, but only when a sample of the failed
    # cells shows it helps (a column of city names should not pay for it).
    if retry.any():
        sample = text[retry].head(200).str.replace(_NUMBER_NOISE, "", regex=True)
        if pd.to_numeric(sample, errors="coerce").notna().mean() >= 0.5:
            cleaned = text[retry].str.replace(_NUMBER_NOISE, "", regex=True)
            values[retry] = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64)
    nonempty = int((~empty).sum())
    failed = int((np.isnan(values) & ~empty).sum())
    return values, nonempty, failed


# --- preparing the arrays -------------------------------------------------------------------


@dataclass
class Prepared:
    zips: np.ndarray  # int32 per row
    figures: list[str]
    values: np.ndarray  # float64 rows x figures
    categories: dict[str, list[str]]
    codes: np.ndarray  # int16 rows x categorical columns
    coords: np.ndarray  # float64 rows x (lat, lon), NaN when unknown
    report: dict = field(default_factory=dict)


def _issue(report: dict, row: int | None, column: str | None, reason: str) -> None:
    report["issue_count"] += 1
    if len(report["issues"]) < MAX_ISSUES:
        report["issues"].append({"row": row, "column": column, "reason": reason})


def _plausible_us(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    # States and territories: Puerto Rico/USVI (lat 17) to Alaska (71); Guam and the western
    # Aleutians sit east of the antimeridian.
    west = (lon >= -180) & (lon <= -64)
    east = (lon >= 130) & (lon <= 180)
    return (lat >= 13) & (lat <= 72) & (west | east)


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance; works on scalars and numpy arrays."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(lon2) - np.radians(lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def find_key_column(columns: list[str], key_column: str | None, source_name: str) -> str:
    key = (key_column or "").strip().lower() or next(
        (c for c in KEY_CANDIDATES if c in columns), None
    )
    if key is None or key not in columns:
        wanted = repr(key_column) if key_column else f"one of {list(KEY_CANDIDATES)}"
        raise DemographicsError(
            f"{source_name}: no ZIP key column ({wanted}); columns are {columns}"
        )
    return key


def _range_codes(column: str) -> dict[float, tuple[str, float]]:
    return next((codes for words, codes in RANGE_CODES if all(w in column for w in words)), {})


def _decode_codes(column: str, values: np.ndarray, report: dict) -> None:
    """ACS range codes -> the bound they stand for, annotation values -> missing (in place)."""
    jam = values <= JAM_VALUE_MAX
    if jam.any():
        values[jam] = np.nan
        _issue(
            report, None, column, f"{int(jam.sum())} Census annotation value(s) stored as missing"
        )
    for code, (side, bound) in _range_codes(column).items():
        hit = values == code
        if hit.any():
            values[hit] = bound
            report.setdefault("range_codes", {}).setdefault(column, {})[f"{side} {bound:,.0f}"] = (
                int(hit.sum())
            )


def prepare(
    frame: pd.DataFrame,
    *,
    key_column: str | None = None,
    places: dict[str, geo.Place] | None = None,
    source_name: str = "table",
) -> Prepared:
    """Classify columns, parse numbers, derive figures, validate keys and centroids."""
    report: dict = {"issues": [], "issue_count": 0}
    columns = list(frame.columns)
    key = find_key_column(columns, key_column, source_name)
    if "population" not in columns:
        raise DemographicsError(
            f"{source_name}: column 'population' (residents per ZIP) is required; columns are {columns}"
        )
    lat_col, lon_col = next(
        ((a, b) for a, b in COORD_CANDIDATES if a in columns and b in columns), (None, None)
    )

    # Keys: invalid and duplicate rows are skipped and reported (line numbers count the header).
    raw_keys = frame[key].tolist()
    keys = [normalize_zip_key(str(raw)) for raw in raw_keys]
    keep = np.ones(len(frame), dtype=bool)
    seen: set[str] = set()
    kept_zips: list[int] = []
    for i, (raw, zip5) in enumerate(zip(raw_keys, keys, strict=True)):
        if zip5 is None:
            keep[i] = False
            _issue(report, i + 2, key, f"{raw!r} is not a 5-digit ZIP code; row skipped")
        elif zip5 in seen:
            keep[i] = False
            _issue(report, i + 2, key, f"duplicate ZIP {zip5}; first row kept, this one skipped")
        else:
            seen.add(zip5)
            kept_zips.append(int(zip5))
    rows = frame[keep].reset_index(drop=True)
    line_numbers = np.flatnonzero(keep) + 2
    if rows.empty:
        raise DemographicsError(f"{source_name}: no row has a valid ZIP in column {key!r}")
    zips = np.array(kept_zips, dtype=np.int32)

    numeric: dict[str, np.ndarray] = {}
    categories: dict[str, list[str]] = {}
    cat_codes: list[np.ndarray] = []
    ignored: list[str] = []
    coerced: dict[str, int] = {}
    for column in columns:
        if column == key:
            continue
        values, nonempty, failed = _parse_numeric(rows[column])
        if nonempty and failed <= (1 - NUMERIC_SHARE) * nonempty:
            bad = ~np.isfinite(values) & ~np.isnan(values)
            values[bad] = np.nan  # inf from division by zero upstream
            if failed or bad.any():
                coerced[column] = failed + int(bad.sum())
            _decode_codes(column, values, report)
            numeric[column] = values
            continue
        text = rows[column].fillna("").astype(str).str.strip()
        distinct = sorted(set(text) - {""})
        if column == "population":
            raise DemographicsError(f"{source_name}: column 'population' is not numeric")
        if 0 < len(distinct) <= MAX_CATEGORIES:
            categories[column] = distinct
            lookup = {v: i for i, v in enumerate(distinct)}
            cat_codes.append(text.map(lambda v, m=lookup: m.get(v, -1)).to_numpy(dtype=np.int16))
        else:
            ignored.append(column)
    for column, n in coerced.items():
        _issue(report, None, column, f"{n} value(s) not numbers (or infinite) stored as missing")

    population = numeric["population"]
    bad_pop = np.isnan(population) | (population < 0)
    for i in np.flatnonzero(bad_pop)[:MAX_ISSUES]:
        _issue(
            report,
            int(line_numbers[i]),
            "population",
            "missing or negative; ZIP treated as unpopulated",
        )
    population[bad_pop] = np.nan

    # Centroids: the table's own, checked against GeoNames (the shared table has a few
    # garbled ones, e.g. Puerto Rico ZIPs placed in Finland).
    lat = numeric.pop(lat_col) if lat_col else np.full(len(rows), np.nan)
    lon = numeric.pop(lon_col) if lon_col else np.full(len(rows), np.nan)
    lat, lon = lat.copy(), lon.copy()
    replaced = 0
    implausible = ~_plausible_us(lat, lon)
    lat[implausible], lon[implausible] = np.nan, np.nan
    if places:
        g_lat = np.array([_coord(places.get(f"{z:05d}"), 0) for z in zips])
        g_lon = np.array([_coord(places.get(f"{z:05d}"), 1) for z in zips])
        known = ~np.isnan(g_lat)
        far = known & (
            np.isnan(lat) | (haversine_km(lat, lon, g_lat, g_lon) > CENTROID_TOLERANCE_KM)
        )
        replaced = int(far.sum())
        lat[far], lon[far] = g_lat[far], g_lon[far]
    coords = np.column_stack([lat, lon])

    derived = _derive(numeric)
    figures = ["population", *[c for c in numeric if c != "population"]]
    values = np.column_stack([numeric[c] for c in figures]).astype(np.float64)
    codes = (
        np.column_stack(cat_codes).astype(np.int16)
        if cat_codes
        else np.zeros((len(rows), 0), dtype=np.int16)
    )
    report.update(
        key_column=key,
        coordinate_columns=[lat_col, lon_col] if lat_col else None,
        rows_loaded=len(rows),
        figures=figures,
        derived=derived,
        categorical={c: len(v) for c, v in categories.items()},
        ignored_columns=ignored,
        centroids_replaced_from_geonames=replaced,
        centroids_missing=int(np.isnan(coords[:, 0]).sum()),
    )
    return Prepared(zips, figures, values, categories, codes, coords, report)


def _coord(place: geo.Place | None, i: int) -> float:
    if place is None:
        return math.nan
    value = place.latitude if i == 0 else place.longitude
    return math.nan if value is None else value


def _derive(numeric: dict[str, np.ndarray]) -> list[str]:
    """Add ratios that make ZIPs of different size comparable; never overwrite a given column."""
    added: list[str] = []

    def add(name: str, values: np.ndarray) -> None:
        if name not in numeric:
            values = values.astype(np.float64)
            values[~np.isfinite(values)] = np.nan
            numeric[name] = values
            added.append(name)

    pop = numeric["population"]
    with np.errstate(divide="ignore", invalid="ignore"):
        if "land_area_sqmi" in numeric:
            land = numeric["land_area_sqmi"]
            add("density_per_sqmi", np.where(land > 0, pop / land, np.nan))
        if "total_wages_usd" in numeric:
            add(
                "wages_per_resident_usd",
                np.where(pop > 0, numeric["total_wages_usd"] / pop, np.nan),
            )
        if "housing_units" in numeric:
            hu = numeric["housing_units"]
            add("persons_per_housing_unit", np.where((hu > 0) & (pop > 0), pop / hu, np.nan))
        if "density_per_sqmi" in numeric:
            add("log_density", np.log10(1 + np.clip(numeric["density_per_sqmi"], 0, None)))
        if "land_area_sqmi" in numeric and "water_area_sqmi" in numeric:
            total = numeric["land_area_sqmi"] + numeric["water_area_sqmi"]
            add("water_share", np.where(total > 0, numeric["water_area_sqmi"] / total, np.nan))
    # A ratio of a ZIP without residents (wages / 0 people) is not a figure of that place.
    for name in ("wages_per_resident_usd", "persons_per_housing_unit"):
        if name in numeric:
            numeric[name] = np.where(pop > 0, numeric[name], np.nan)
    return added


def build_zip_index(
    prepared: Prepared, min_population: int, places: dict[str, geo.Place] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """own/source/km arrays over all 100,000 ZIPs, with fallbacks resolved by nearest target."""
    from scipy.spatial import cKDTree

    n = len(prepared.zips)
    own = np.full(N_ZIPS, -1, dtype=np.int32)
    source = np.full(N_ZIPS, -1, dtype=np.int32)
    km = np.full(N_ZIPS, np.nan, dtype=np.float32)
    rows = np.arange(n, dtype=np.int32)
    own[prepared.zips] = rows
    pop = prepared.values[:, 0]
    lat, lon = prepared.coords[:, 0], prepared.coords[:, 1]
    populated = np.nan_to_num(pop) >= 1
    source[prepared.zips[populated]] = rows[populated]
    km[prepared.zips[populated]] = 0.0

    targets = np.flatnonzero((np.nan_to_num(pop) >= min_population) & ~np.isnan(lat))
    # ZIPs to resolve: rows without residents, then GeoNames ZIPs absent from the table.
    q_zips = [int(z) for z in prepared.zips[~populated & ~np.isnan(lat)]]
    q_lat = list(lat[~populated & ~np.isnan(lat)])
    q_lon = list(lon[~populated & ~np.isnan(lat)])
    n_unpopulated = len(q_zips)
    if places:
        for code, place in places.items():
            if (
                len(code) == 5
                and code.isdigit()
                and own[int(code)] < 0
                and place.latitude is not None
            ):
                q_zips.append(int(code))
                q_lat.append(place.latitude)
                q_lon.append(place.longitude)
    stats: dict[str, int | float | None] = {
        "no_population": 0,
        "not_in_table": 0,
        "beyond_max_km": 0,
        "max_km": None,
        "median_km": None,
    }
    if len(targets) and q_zips:
        tree = cKDTree(_unit_vectors(lat[targets], lon[targets]))
        qa, qo = np.asarray(q_lat), np.asarray(q_lon)
        _, nearest = tree.query(_unit_vectors(qa, qo))
        chosen = targets[nearest]
        dist = haversine_km(qa, qo, lat[chosen], lon[chosen])
        qz = np.asarray(q_zips, dtype=np.int64)
        near = dist <= FALLBACK_MAX_KM
        source[qz[near]] = chosen[near]
        km[qz[near]] = dist[near].astype(np.float32)
        stats.update(
            no_population=int(near[:n_unpopulated].sum()),
            not_in_table=int(near[n_unpopulated:].sum()),
            beyond_max_km=int((~near).sum()),
            max_km=round(float(dist[near].max()), 2) if near.any() else None,
            median_km=round(float(np.median(dist[near])), 2) if near.any() else None,
        )
    return own, source, km, stats


# --- loading --------------------------------------------------------------------------------


def content_digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


def new_version(prefix: str, *parts: bytes) -> str:
    """Sortable id: build time plus a digest of the inputs (the digest says what was built
    from; the time makes every build a new version, so a changed loader never reuses an old
    folder)."""
    return f"{prefix}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{content_digest(*parts)[:8]}"


def _us_places(settings: Settings, report: dict) -> dict[str, geo.Place] | None:
    try:
        return geo.country_index("US", settings)
    except geo.GeoError as err:
        report["geonames"] = f"not used ({err.reason}); ZIPs missing from the table get no figures"
        return None


def join_table(
    frame: pd.DataFrame, key: str, extra: pd.DataFrame, source_name: str
) -> tuple[pd.DataFrame, dict]:
    """``frame`` with the columns of ``extra`` (another ZIP-keyed table) added by ZIP.

    A left join: the main table says which ZIPs exist and how many people live there, so a ZIP
    only the extra table knows adds nothing. Columns the main table has already (``state``)
    are kept from the main table.
    """
    extra_key = find_key_column(list(extra.columns), None, source_name)
    zips = extra[extra_key].astype(str).map(normalize_zip_key)
    valid = zips.notna()
    duplicate = valid & zips.duplicated()
    kept = valid & ~duplicate
    added = [c for c in extra.columns if c != extra_key and c not in frame.columns]
    if not added:
        raise DemographicsError(
            f"{source_name}: no column to add (its columns {list(extra.columns)} are all in "
            "the main table already)"
        )
    by_zip = extra.loc[kept, added].set_index(pd.Index(zips[kept], name="zip"))
    main_zips = frame[key].astype(str).map(normalize_zip_key)
    joined = by_zip.reindex(main_zips.to_numpy())
    frame = frame.copy()
    for column in added:
        frame[column] = joined[column].to_numpy()
    known = set(main_zips.dropna())
    report = {
        "key_column": extra_key,
        "rows": len(extra),
        "columns": added,
        "kept_from_main_table": [c for c in extra.columns if c != extra_key and c not in added],
        "main_zips_matched": int(main_zips.isin(by_zip.index).sum()),
        "zips_not_in_main_table": int(sum(1 for z in by_zip.index if z not in known)),
        "invalid_keys": int((~valid).sum()),
        "duplicate_keys": int(duplicate.sum()),
    }
    return frame, report


def load_demographics(
    path: Path | str,
    settings: Settings,
    *,
    key_column: str | None = None,
    min_population: int | None = None,
    joins: Sequence[Path | str] = (),
) -> dict:
    """Load a ZIP-keyed table as the live demographics; returns the load report.

    ``joins`` are further ZIP-keyed tables whose columns are added by ZIP (for example ACS
    median household income, ``zcta_income_acs.csv``; see ``join_table``).

    Raises DemographicsError for a file that cannot be used at all; row-level problems are
    listed in the report (``issues``, first 50) and those rows skipped.
    """
    path = Path(path)
    join_paths = [Path(p) for p in joins]
    min_population = settings.small_cell_min if min_population is None else int(min_population)
    if min_population < 1:
        raise DemographicsError("min_population must be at least 1")
    started = time.perf_counter()
    frame, source = read_table(path, key_column)
    joined = []
    if join_paths:
        key = find_key_column(list(frame.columns), key_column, path.name)
        for extra_path in join_paths:
            extra, extra_info = read_table(extra_path)
            frame, join_report = join_table(frame, key, extra, extra_path.name)
            digest = content_digest(extra_path.read_bytes())
            joined.append({**extra_info, "digest": digest, **join_report})
    geo_report: dict = {}
    places = _us_places(settings, geo_report)
    prepared = prepare(frame, key_column=key_column, places=places, source_name=path.name)
    own, src, km, fallback = build_zip_index(prepared, min_population, places)
    pop = np.nan_to_num(prepared.values[:, 0])
    geo_file = geo.country_file(settings.geo_dir, "US") if places and settings.geo_dir else None
    version = new_version(
        "d",
        path.read_bytes(),
        geo_file.read_bytes() if geo_file else b"",
        json.dumps([ARTIFACT_FORMAT, key_column, min_population]).encode(),
        *(p.read_bytes() for p in join_paths),
    )
    report = {
        "version": version,
        "source": {**source, "digest": content_digest(path.read_bytes())},
        "joined": joined,
        **prepared.report,
        "min_population": min_population,
        "populated_zips": int((pop >= 1).sum()),
        "small_cells": int(((pop >= 1) & (pop < min_population)).sum()),
        "fallback": fallback,
        "zips_served": int((src >= 0).sum()),
        **geo_report,
    }
    meta = {
        "format": ARTIFACT_FORMAT,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": prepared.figures,
        "categorical": prepared.categories,
        "min_population": min_population,
        "report": report,
    }

    def build(folder: Path) -> str:
        np.save(folder / "values.npy", prepared.values)
        np.save(folder / "categorical.npy", prepared.codes)
        np.save(folder / "zips.npy", prepared.zips)
        np.save(folder / "coords.npy", prepared.coords)
        np.save(folder / "own.npy", own)
        np.save(folder / "source.npy", src)
        np.save(folder / "km.npy", km)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        return version

    publish_to(artifacts_for(settings), current_demographics.prefix(), build)
    current_demographics.invalidate()
    report["seconds"] = round(time.perf_counter() - started, 3)
    report["path"] = str(settings.artifacts_dir / "demographics" / version)
    return report


# --- serving --------------------------------------------------------------------------------


class DemographicsTable:
    """One loaded version, memory-mapped; all lookups are array reads."""

    def __init__(self, folder: Path) -> None:
        meta = json.loads((folder / "meta.json").read_text())
        self.folder = folder
        self.meta = meta
        self.version: str = meta["version"]
        self.figures: tuple[str, ...] = tuple(meta["figures"])
        self.categories: dict[str, list[str]] = meta["categorical"]
        self.min_population: int = meta["min_population"]

        def load(name: str) -> np.ndarray:
            # np.asarray drops the memmap subclass (whose indexing is slower); the buffer stays
            # the shared mapping.
            return np.asarray(np.load(folder / name, mmap_mode="r"))

        self.values = load("values.npy")
        self.codes = load("categorical.npy")
        self.zips = load("zips.npy")
        self.coords = load("coords.npy")
        self.own = load("own.npy")
        self.source = load("source.npy")
        self.km = load("km.npy")
        self._cat_names = tuple(self.categories)
        self._cat_values = tuple(tuple(v) for v in self.categories.values())
        # Per-process, 1 byte a row: lets complete rows skip the NaN -> None pass.
        self._has_nan = np.isnan(self.values).any(axis=1).tolist()

    def __len__(self) -> int:
        return len(self.zips)

    def locate(self, zip_code: str) -> tuple[int, int, float] | None:
        """(own row or -1, row serving the figures, distance km) of a ZIP; None if unknown."""
        if len(zip_code) == 5 and zip_code.isdigit():
            z = int(zip_code)
        else:
            try:
                z = int(geo.normalize_postal_code(zip_code, "US"))
            except geo.GeoError:
                return None
        src = int(self.source[z])
        if src < 0:
            return None
        return int(self.own[z]), src, float(self.km[z])

    def population(self, row: int) -> float:
        value = float(self.values[row, 0])
        return 0.0 if value != value else value

    def figures_of(self, row: int) -> dict[str, object]:
        """Numeric figures (None for missing) and categories of one table row."""
        out: dict[str, object] = dict(zip(self.figures, self.values[row].tolist()))  # noqa: B905
        if self._has_nan[row]:
            for name, value in out.items():
                if value != value:
                    out[name] = None
        if self._cat_names:
            for name, options, code in zip(  # noqa: B905 - same length by construction
                self._cat_names, self._cat_values, self.codes[row].tolist()
            ):
                out[name] = options[code] if code >= 0 else None
        return out

    def zip_of(self, row: int) -> str:
        return f"{int(self.zips[row]):05d}"

    def lookup(self, zip_code: str) -> dict | None:
        """Figures for a ZIP, with where they come from; None when the ZIP is unknown.

        ``source_zip`` is the ZIP whose figures are served. When it is not the ZIP asked for,
        ``fallback_from`` names it, ``fallback_km`` gives the distance and ``fallback_reason``
        is ``no_population`` (PO box, unique ZIP) or ``not_in_table``. ``small_cell`` is true
        when the serving ZIP has fewer than ``min_population`` residents.
        """
        found = self.locate(zip_code)
        if found is None:
            return None
        own, src, km = found
        out = self.figures_of(src)
        pop = out["population"]
        assert pop is None or isinstance(pop, float)  # a numeric figure (values.npy is float)
        out["small_cell"] = pop is None or pop < self.min_population
        if own == src:
            out["source_zip"] = zip_code if len(zip_code) == 5 else self.zip_of(src)
        else:
            out["source_zip"] = out["fallback_from"] = self.zip_of(src)
            out["fallback_km"] = round(km, 2)
            out["fallback_reason"] = "not_in_table" if own < 0 else "no_population"
        return out


current_demographics: CurrentArtifact[DemographicsTable] = CurrentArtifact(
    "demographics", DemographicsTable
)


def demographics(settings: Settings) -> DemographicsTable | None:
    """The live table of this process (memory-mapped once), or None when none was loaded."""
    return current_demographics.get(settings)


def ensure_demographics(settings: Settings) -> dict | None:
    """Load ``settings.demographics_file`` (with ``settings.demographics_joins``) if nothing is
    live yet (startup of a fresh install)."""
    if demographics(settings) is not None or settings.demographics_file is None:
        return None
    return load_demographics(
        settings.demographics_file, settings, joins=settings.demographics_joins
    )
