"""``offerwise geo`` (postal-code lookup, demographics loading) and ``offerwise segments``."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.output import emit, fail
from app.settings import load_settings
from enrichment import geo as geo_domain
from enrichment import segments as segments_domain
from enrichment.demographics import DemographicsError, demographics, load_demographics
from enrichment.zip_profile import zip_profile


@click.group()
def geo() -> None:
    """Postal-code geography and ZIP demographics."""


@geo.command("lookup")
@click.argument("postal_code")
@click.option("--country", default="US", show_default=True, help="Two-letter country code.")
def lookup(postal_code: str, country: str) -> None:
    """Show the profile block of POSTAL_CODE: place, demographics, segment."""
    emit(zip_profile(postal_code, country, load_settings()))


@geo.command("countries")
def countries() -> None:
    """List the countries whose postal-code file is present in OFFERWISE_GEO_DIR."""
    settings = load_settings()
    emit(
        {
            "geo_dir": str(settings.geo_dir) if settings.geo_dir else None,
            "countries": geo_domain.available_countries(settings),
        }
    )


@geo.command("load-demographics")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key-column", default=None, help="Column holding the ZIP (default: zip, zcta, ...)."
)
@click.option(
    "--min-population",
    type=click.IntRange(min=1),
    default=None,
    help="Small-cell threshold: fewer residents -> segment only, no figures (default 100).",
)
@click.option(
    "--join",
    "joins",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Another ZIP-keyed table whose columns are added by ZIP, e.g. zcta_income_acs.csv "
    "(repeatable; default OFFERWISE_DEMOGRAPHICS_JOIN).",
)
def load(
    path: Path | None,
    key_column: str | None,
    min_population: int | None,
    joins: tuple[Path, ...],
) -> None:
    """Load a ZIP-keyed census table (CSV or Parquet) as the live demographics.

    PATH defaults to OFFERWISE_DEMOGRAPHICS. Extra numeric columns are taken as they come, and
    so are the columns of each --join table (ACS median household income: its range codes
    250001 and 2499 are read as the bounds 250,000 and 2,500).
    """
    settings = load_settings()
    path = path or settings.demographics_file
    if path is None:
        fail("give a file or set OFFERWISE_DEMOGRAPHICS")
    try:
        emit(
            load_demographics(
                path,
                settings,
                key_column=key_column,
                min_population=min_population,
                joins=joins or settings.demographics_joins,
            )
        )
    except DemographicsError as err:
        fail(str(err))


@geo.command("status")
def status() -> None:
    """Show what is live: postal-code countries, demographics version, segmentation version."""
    settings = load_settings()
    table = demographics(settings)
    emit(
        {
            "countries": geo_domain.available_countries(settings),
            "demographics": None
            if table is None
            else {
                "version": table.version,
                "created_at": table.meta["created_at"],
                "rows": len(table),
                "figures": list(table.figures),
                "min_population": table.min_population,
            },
            "segments": segments_domain.segmentation_info(settings),
        }
    )


@click.group()
def segments() -> None:
    """ZIP micro-segments."""


@segments.command("build")
@click.option(
    "--k", type=click.IntRange(min=2), default=segments_domain.DEFAULT_K, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--features",
    default=None,
    help="Comma-separated figures to cluster on (default: all per-resident figures).",
)
def build(k: int, seed: int, features: str | None) -> None:
    """Cluster the live demographics into K segments and make them live."""
    names = [f.strip() for f in features.split(",") if f.strip()] if features else None
    try:
        emit(segments_domain.build_segments(load_settings(), k=k, seed=seed, features=names))
    except segments_domain.SegmentsError as err:
        fail(str(err))


@segments.command("list")
@click.option("--full", is_flag=True, help="Include mean profiles and standardized centers.")
def list_(full: bool) -> None:
    """List the live segments with their description and size."""
    rows = segments_domain.list_segments(load_settings())
    if not full:
        keep = ("id", "label", "description", "zips", "population", "population_share")
        rows = [{key: row[key] for key in keep} for row in rows]
    emit(rows)
