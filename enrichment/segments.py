"""ZIP micro-segments: k-means over standardized ZIP demographics, described in plain words.

``build_segments`` clusters the ZIPs of the live demographics table and stores a versioned
segmentation under ``<data dir>/artifacts/segments/<version>/``: ``meta.json`` (features and
their transforms, centers, per-segment size, mean profile, label and description) and
``assign.npy`` (segment of every ZIP, indexed by the ZIP as an integer, -1 when none).

Choices, and why:
- Features are intensive figures (ratios, shares, per-resident values): counts and areas
  (population, housing units, total wages, land area) measure how big a ZIP is, not what it is
  like. Extra numeric columns of a richer table join automatically unless they look like
  counts/totals; ``features=`` overrides the choice.
- Skewed non-negative features are log-transformed, every feature is clipped to its 1st-99th
  percentile and standardized, missing values sit at the mean: a handful of odd ZIPs must not
  claim clusters of their own.
- Centers are fitted on ZIPs with at least ``min_population`` residents (figures of tiny cells
  are noise); every populated ZIP is then assigned to its nearest center, and a ZIP served by a
  fallback (PO box, ZIP missing from the table) takes the segment of the ZIP serving it.
- Segment ids are ordered by population (0 = most residents), so that the same seed gives the
  same ids, and labels name the settlement type first, then the most distinctive figures,
  each topic once and never against the settlement type (``label_conflicts`` checks a label).
- With ACS median household income in the table (``--join zcta_income_acs.csv``), it replaces
  the 2010 wages per resident: labels speak of household income.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from enrichment.demographics import (
    N_ZIPS,
    SUPERSEDED_BY,
    CurrentArtifact,
    DemographicsTable,
    character_figures,
    demographics,
    new_version,
    publish_to,
)
from store.artifacts import artifacts_for
from store.config import Settings

SEGMENT_FORMAT = 1
DEFAULT_K = 40
MAX_K = 500
SKEW_FOR_LOG = 2.0
NOTABLE_Z = 0.5
VERY_Z = 1.5
MAX_PHRASES = 3

# Words a marketer reads for the figures we know: (high, low, may say "very"). Others get
# "high/low <name>". Relative words tell apart two segments that would read the same.
PHRASES: dict[str, tuple[str | None, str | None, bool]] = {
    "wages_per_resident_usd": ("high wages", "low wages", True),
    "persons_per_housing_unit": ("large households", "small households", True),
    "water_share": ("waterside", None, False),
    "urban_share": ("mostly urban", "mostly rural", False),
    "log_density": ("dense", "sparse", True),
    "density_per_sqmi": ("dense", "sparse", True),
    "median_age": ("older residents", "younger residents", True),
    "median_household_income": ("high household incomes", "low household incomes", True),
    "median_household_income_usd": ("high household incomes", "low household incomes", True),
    "median_income": ("high incomes", "low incomes", True),
    "median_home_value": ("expensive homes", "affordable homes", True),
    "median_rent": ("high rents", "low rents", True),
    "owner_occupied_share": ("mostly homeowners", "mostly renters", False),
    "bachelors_share": ("college-educated", "fewer graduates", True),
    "children_share": ("families with children", "few children", True),
}
RELATIVE: dict[str, tuple[str, str]] = {
    "wages_per_resident_usd": ("higher wages", "lower wages"),
    "median_household_income_usd": ("higher household incomes", "lower household incomes"),
    "persons_per_housing_unit": ("larger households", "smaller households"),
    "water_share": ("more waterside", "less waterside"),
    "urban_share": ("more urban", "more rural"),
    "log_density": ("denser", "sparser"),
    "density_per_sqmi": ("denser", "sparser"),
}
# Settlement type from the population-weighted median density (residents per sq mi).
SETTLEMENT = (
    (7_500, "dense urban core"),
    (3_000, "urban neighbourhoods"),
    (1_000, "suburbs"),
    (250, "outer suburbs and small towns"),
    (40, "small towns and countryside"),
    (0, "remote rural"),
)
DENSITY_FEATURES = {"log_density", "density_per_sqmi"}
# The settlement type already says how urban a place is: after an urban lead "mostly urban"
# adds nothing, after a rural one it contradicts it ("Small towns and countryside, mostly
# urban"); after "outer suburbs and small towns" it says which way the mix leans.
URBAN_LEADS = {"dense urban core", "urban neighbourhoods", "suburbs"}
RURAL_LEADS = {"small towns and countryside", "remote rural"}
# "Mostly urban" needs at least this urban share of residents.
URBAN_MAJORITY = 0.5
# Figures that speak of the same thing: a label says each topic once, in one direction.
TOPICS = {
    "log_density": "urbanity",
    "density_per_sqmi": "urbanity",
    "urban_share": "urbanity",
    "wages_per_resident_usd": "income",
    "median_household_income_usd": "income",
    "median_household_income": "income",
    "median_income": "income",
}


class SegmentsError(ValueError):
    """Segmentation cannot be built as asked; the message says why."""


# --- feature transforms ----------------------------------------------------------------------


def default_features(table: DemographicsTable) -> list[str]:
    return character_figures(table.figures)


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    return float(((x - x.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0


def fit_transforms(raw: np.ndarray, names: list[str]) -> list[dict]:
    """Per feature: log or not, clip range, mean and std, from the fitting rows."""
    specs = []
    for j, name in enumerate(names):
        col = raw[:, j]
        col = col[np.isfinite(col)]
        if len(col) < 2:
            raise SegmentsError(f"feature {name!r} has fewer than 2 values among fitted ZIPs")
        log = bool(col.min() >= 0 and _skew(col) > SKEW_FOR_LOG)
        if log:
            col = np.log1p(col)
        lo, hi = np.percentile(col, [1, 99])
        col = np.clip(col, lo, hi)
        sd = float(col.std())
        specs.append(
            {
                "name": name,
                "log": log,
                "lo": float(lo),
                "hi": float(hi),
                "mean": float(col.mean()),
                "std": sd if sd > 0 else 1.0,
            }
        )
    return specs


def standardize(raw: np.ndarray, specs: list[dict]) -> np.ndarray:
    z = np.empty_like(raw, dtype=np.float64)
    for j, spec in enumerate(specs):
        col = raw[:, j].astype(np.float64)
        if spec["log"]:
            col = np.log1p(np.clip(col, 0, None))
        col = (np.clip(col, spec["lo"], spec["hi"]) - spec["mean"]) / spec["std"]
        z[:, j] = np.where(np.isfinite(col), col, 0.0)
    return z


# --- words -----------------------------------------------------------------------------------


def _humanize(name: str) -> str:
    for suffix in ("_usd", "_sqmi", "_pct", "_share", "_rate"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("_", " ").strip()


def phrase(name: str, z: float) -> str | None:
    """Words for a standardized center value, e.g. ("wages_per_resident_usd", 1.8) -> "very
    high wages"; None when that direction is not worth saying."""
    h = _humanize(name)
    high, low, very_ok = PHRASES.get(name, (f"high {h}", f"low {h}", True))
    text = high if z > 0 else low
    if text is None:
        return None
    return f"very {text}" if very_ok and abs(z) >= VERY_Z else text


def relative_phrase(name: str, diff: float) -> str:
    h = _humanize(name)
    higher, lower = RELATIVE.get(name, (f"higher {h}", f"lower {h}"))
    return higher if diff > 0 else lower


def settlement(median_density: float | None) -> str | None:
    if median_density is None or not np.isfinite(median_density):
        return None
    return next(words for floor, words in SETTLEMENT if median_density >= floor)


def _sign(lead: str | None) -> int:
    return 1 if lead in URBAN_LEADS else -1 if lead in RURAL_LEADS else 0


def _words(
    center: dict[str, float], lead: str | None, profile: dict[str, float | None]
) -> tuple[list[str], set[str]]:
    """The settlement type, then the most distinctive figures (|z| >= NOTABLE_Z); also the
    names of the figures those words speak of.

    A phrase is left out when it would contradict one already said about the same topic
    (``TOPICS``: "suburbs, mostly rural", "high wages, low household incomes"), and the urban
    share speaks only when the share itself agrees: a segment above the average ZIP's urban
    share may still be 40% urban, and "mostly urban" would then be false.
    """
    words = [lead] if lead else []
    named = set(DENSITY_FEATURES) if lead else set()
    said: dict[str, int] = {"urbanity": _sign(lead)} if _sign(lead) else {}
    for name, z in sorted(center.items(), key=lambda kv: -abs(kv[1])):
        if len(words) >= MAX_PHRASES:
            break
        if abs(z) < NOTABLE_Z or name in named:
            continue
        sign = 1 if z > 0 else -1
        if name == "urban_share":
            share = profile.get(name)
            if share is None or (share >= URBAN_MAJORITY) != (sign > 0):
                continue
        topic = TOPICS.get(name, name)
        if topic in said:
            # The same thing said again ("urban neighbourhoods, mostly urban"), or its
            # opposite: either way nothing to add.
            continue
        text = phrase(name, z)
        if text and text not in words:
            words.append(text)
            named.add(name)
            said[topic] = sign
    return words, named


def _label_words() -> dict[str, tuple[str, int]]:
    """Every word of a label -> (topic, +1 high / -1 low), for ``label_conflicts``."""
    out = {lead: ("urbanity", _sign(lead)) for lead in URBAN_LEADS | RURAL_LEADS}
    for name, (high, low, _very) in PHRASES.items():
        topic = TOPICS.get(name, name)
        if high:
            out[high] = (topic, 1)
        if low:
            out[low] = (topic, -1)
    return out


def label_conflicts(label: str) -> list[str]:
    """Pairs of words in a label that speak of the same topic in opposite directions ("Small
    towns and countryside, mostly urban"); empty for a label that reads consistently.
    Relative words added to tell segments apart ("denser") compare, so they are not read."""
    seen: dict[str, tuple[int, str]] = {}
    conflicts = []
    for part in (p.strip().lower() for p in label.split(",")):
        part = part.split(" (variant")[0]
        found = _LABEL_WORDS.get(part.removeprefix("very "))
        if found is None:
            continue
        topic, sign = found
        if topic in seen and seen[topic][0] != sign:
            conflicts.append(f"{seen[topic][1]!r} and {part!r}")
        seen.setdefault(topic, (sign, part))
    return conflicts


_LABEL_WORDS = _label_words()


def describe(segments: list[dict], has_density: bool) -> None:
    """Set ``label`` and ``description`` on every segment; labels are distinct."""
    named: dict[int, set[str]] = {}
    for seg in segments:
        lead = settlement(seg["median_density"]) if has_density else None
        words, named[seg["id"]] = _words(seg["center_z"], lead, seg["mean_profile"])
        seg["label"] = ", ".join(words) or "typical profile"
    # Segments that read the same: name, for each, the figure not yet mentioned that sets it
    # most apart from the others of its group ("denser", "higher wages"); number any that
    # still clash.
    for group in _clashes(segments):
        names = list(group[0]["center_z"])
        mean = {n: float(np.mean([s["center_z"][n] for s in group])) for n in names}
        for seg in group:
            diffs = {n: seg["center_z"][n] - mean[n] for n in names if n not in named[seg["id"]]}
            if diffs:
                name = max(diffs, key=lambda n: abs(diffs[n]))
                seg["label"] += f", {relative_phrase(name, diffs[name])}"
    for group in _clashes(segments):
        for n, seg in enumerate(group[1:], start=2):
            seg["label"] += f" (variant {n})"
    for seg in segments:
        seg["label"] = seg["label"][0].upper() + seg["label"][1:]
        seg["description"] = _sentence(seg)


def _clashes(segments: list[dict]) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for seg in segments:
        groups.setdefault(seg["label"], []).append(seg)
    return [g for g in groups.values() if len(g) > 1]


def _fmt(name: str, value: float) -> str:
    if name.endswith("_usd"):
        return f"${value:,.0f}"
    if name.endswith("_share"):
        return f"{value:.0%}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _sentence(seg: dict) -> str:
    known = {
        "median_household_income_usd": "median household income",
        "wages_per_resident_usd": "wages per resident",
        "persons_per_housing_unit": "residents per home",
        "urban_share": "urban",
        "density_per_sqmi": "residents per sq mi",
    }
    profile = seg["mean_profile"]
    facts = [
        f"{_fmt(name, profile[name])} {words}"
        for name, words in known.items()
        if profile.get(name) is not None and profile.get(SUPERSEDED_BY.get(name, "")) is None
    ]
    facts += [
        f"{_humanize(name)} {_fmt(name, seg['mean_profile'][name])}"
        for name in seg["center_z"]
        if name not in known and name != "log_density" and seg["mean_profile"].get(name) is not None
    ]
    text = (
        f"{seg['label']}: {seg['zips']:,} ZIP areas, {seg['population']:,.0f} residents "
        f"({seg['population_share']:.1%} of all)."
    )
    return text + (f" On average {', '.join(facts)}." if facts else "")


# --- build -----------------------------------------------------------------------------------


def build_segments(
    settings: Settings,
    *,
    k: int = DEFAULT_K,
    seed: int = 0,
    features: list[str] | None = None,
) -> dict:
    """Cluster the live demographics into ``k`` segments and make them live; returns a summary."""
    from sklearn.cluster import KMeans

    table = demographics(settings)
    if table is None:
        raise SegmentsError(
            "no demographics loaded: run `offerwise geo load-demographics FILE.csv` first"
        )
    names = list(features) if features else default_features(table)
    unknown = [n for n in names if n not in table.figures]
    if unknown:
        raise SegmentsError(f"unknown feature(s) {unknown}; available: {list(table.figures)}")
    if not names:
        raise SegmentsError("no feature to cluster on")
    started = time.perf_counter()
    pop = np.nan_to_num(np.asarray(table.values[:, 0]))
    populated = pop >= 1
    fit_rows = pop >= table.min_population
    if not 2 <= k <= min(MAX_K, int(fit_rows.sum())):
        raise SegmentsError(
            f"k must be between 2 and {min(MAX_K, int(fit_rows.sum()))} (ZIPs with at least "
            f"{table.min_population} residents); got {k}"
        )
    cols = [table.figures.index(n) for n in names]
    raw = np.asarray(table.values[:, cols], dtype=np.float64)
    specs = fit_transforms(raw[fit_rows], names)
    z = standardize(raw, specs)
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z[fit_rows])
    row_seg = np.full(len(table), -1, dtype=np.int64)
    row_seg[populated] = model.predict(z[populated])

    # Renumber by population so ids are stable for a given seed and 0 is the largest.
    totals = np.bincount(row_seg[populated], weights=pop[populated], minlength=k)
    order = np.argsort(-totals, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    row_seg[populated] = rank[row_seg[populated]]
    centers = model.cluster_centers_[order]

    assign = np.full(N_ZIPS, -1, dtype=np.int16)
    served = table.source >= 0
    assign[served] = row_seg[table.source[served]]

    segments = _segment_stats(table, row_seg, centers, names, k, pop)
    describe(segments, has_density="density_per_sqmi" in table.figures)
    version = new_version("s", json.dumps([SEGMENT_FORMAT, table.version, k, seed, names]).encode())
    meta = {
        "format": SEGMENT_FORMAT,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "demographics_version": table.version,
        "k": k,
        "seed": seed,
        "features": specs,
        "min_population": table.min_population,
        "fitted_zips": int(fit_rows.sum()),
        "assigned_zips": int(populated.sum()),
        "served_zips": int(served.sum()),
        "inertia": float(model.inertia_),
        "segments": segments,
    }

    def build(folder: Path) -> str:
        np.save(folder / "assign.npy", assign)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        return version

    publish_to(artifacts_for(settings), current_segmentation.prefix(), build)
    current_segmentation.invalidate()
    summary = {key: value for key, value in meta.items() if key != "segments"}
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["segments"] = [
        {key: s[key] for key in ("id", "label", "zips", "population")} for s in segments
    ]
    return summary


def _segment_stats(
    table: DemographicsTable,
    row_seg: np.ndarray,
    centers: np.ndarray,
    names: list[str],
    k: int,
    pop: np.ndarray,
) -> list[dict]:
    values = np.asarray(table.values)
    # Clip every figure to its 1st-99th percentile over populated ZIPs before averaging: a few
    # dormitory or prison ZIPs (hundreds of residents per housing unit) would otherwise set a
    # segment's "residents per home".
    with np.errstate(all="ignore"):
        bounds = np.nanpercentile(values[row_seg >= 0], [1, 99], axis=0)
    values = np.clip(values, bounds[0], bounds[1])
    density_col = (
        table.figures.index("density_per_sqmi") if "density_per_sqmi" in table.figures else None
    )
    total_pop = float(pop[row_seg >= 0].sum()) or 1.0
    segments = []
    for s in range(k):
        members = row_seg == s
        weights = pop[members]
        profile: dict[str, float | None] = {}
        for j, name in enumerate(table.figures):
            col = values[members, j]
            ok = np.isfinite(col) & (weights > 0)
            # Population-weighted: the figure of the average resident; small noisy cells weigh
            # what their residents weigh.
            profile[name] = (
                round(float(np.average(col[ok], weights=weights[ok])), 4) if ok.any() else None
            )
        median_density = None
        if density_col is not None:
            # Population-weighted: the density the segment's typical resident lives at (an
            # unweighted median would describe its many thinly peopled ZIPs instead).
            dens, w = values[members, density_col], weights
            ok = np.isfinite(dens) & (w > 0)
            if ok.any():
                order = np.argsort(dens[ok])
                cum = np.cumsum(w[ok][order])
                median_density = float(dens[ok][order][np.searchsorted(cum, cum[-1] / 2)])
        segments.append(
            {
                "id": s,
                "zips": int(members.sum()),
                "population": int(weights.sum()),
                "population_share": round(float(weights.sum()) / total_pop, 5),
                "median_density": None if median_density is None else round(median_density, 1),
                "center_z": {n: round(float(c), 3) for n, c in zip(names, centers[s], strict=True)},
                "mean_profile": profile,
            }
        )
    return segments


# --- serving ---------------------------------------------------------------------------------


class Segmentation:
    """One stored segmentation; ``assign`` is memory-mapped and shared across workers."""

    def __init__(self, folder: Path) -> None:
        self.meta = json.loads((folder / "meta.json").read_text())
        self.version: str = self.meta["version"]
        self.segments: list[dict] = self.meta["segments"]
        self.labels: tuple[str, ...] = tuple(s["label"] for s in self.segments)
        self.assign = np.asarray(np.load(folder / "assign.npy", mmap_mode="r"))

    def segment_of(self, zip_code: str) -> int | None:
        if not (len(zip_code) == 5 and zip_code.isdigit()):
            from enrichment.geo import GeoError, normalize_postal_code

            try:
                zip_code = normalize_postal_code(zip_code, "US")
            except GeoError:
                return None
        seg = int(self.assign[int(zip_code)])
        return seg if seg >= 0 else None


current_segmentation: CurrentArtifact[Segmentation] = CurrentArtifact("segments", Segmentation)


def segmentation(settings: Settings) -> Segmentation | None:
    return current_segmentation.get(settings)


def segment_for_zip(zip_code: str, settings: Settings) -> int | None:
    """Segment id of a US ZIP (fallback ZIPs included); None if unknown or nothing built."""
    seg = segmentation(settings)
    return seg.segment_of(zip_code) if seg is not None and isinstance(zip_code, str) else None


def segmentation_info(settings: Settings) -> dict | None:
    """Version, creation time, k, seed and features of the live segmentation."""
    seg = segmentation(settings)
    if seg is None:
        return None
    return {key: value for key, value in seg.meta.items() if key != "segments"}


def list_segments(settings: Settings) -> list[dict]:
    """Every segment of the live segmentation (empty list when none was built).

    Each: id, label, description, zips, population, population_share, median_density,
    mean_profile (population-weighted figures) and center_z (standardized center), plus the
    segmentation ``version``.
    """
    seg = segmentation(settings)
    if seg is None:
        return []
    return [{**s, "version": seg.version} for s in seg.segments]


MAP_MAX_POINTS = 20_000
_maps: dict[tuple, list[list]] = {}


def segment_map(settings: Settings, limit: int = 4000) -> dict:
    """ZIP centroids coloured by segment, for a map-like scatter: ``points`` are
    ``[zip, latitude, longitude, segment]``, an even sample of at most ``limit`` of the US ZIPs
    that have both a GeoNames centroid and a segment (the same sample for the same limit), and
    ``total`` how many such ZIPs there are. Empty without a segmentation or the US postal file."""
    from enrichment.geo import GeoError, country_index

    seg = segmentation(settings)
    if seg is None:
        return {"version": None, "total": 0, "points": []}
    key = (seg.version, settings.geo_dir)
    every = _maps.get(key)
    if every is None:
        try:
            index = country_index("US", settings)
        except GeoError:
            index = {}
        every = []
        for code, place in sorted(index.items()):
            if not (len(code) == 5 and code.isdigit()) or place.latitude is None:
                continue
            s = int(seg.assign[int(code)])
            if s >= 0 and place.longitude is not None:
                every.append([code, place.latitude, place.longitude, s])
        _maps.clear()
        _maps[key] = every
    limit = max(1, min(limit, MAP_MAX_POINTS))
    step = max(1.0, len(every) / limit)
    points = [every[int(i * step)] for i in range(min(limit, len(every)))]
    return {"version": seg.version, "total": len(every), "points": points}
