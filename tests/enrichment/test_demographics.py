"""ZIP demographics loaded from the real ZCTA table; figures checked against the CSV itself."""

from __future__ import annotations

import csv
import math
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enrichment import demographics as demo
from enrichment import geo
from enrichment.zip_profile import demographic_feature_names, zip_profile
from store.config import Settings


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> dict[str, dict[str, str]]:
    with (shared_data / "zcta_demographics.csv").open(encoding="utf-8") as fh:
        return {row["zip"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def loaded(
    shared_data: Path, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, dict]:
    s = Settings(data_dir=tmp_path_factory.mktemp("var"), geo_dir=geo_dir)
    report = demo.load_demographics(shared_data / "zcta_demographics.csv", s)
    return s, report


def _pop(row: dict[str, str]) -> int:
    return int(row["population"])


def test_load_report(loaded: tuple[Settings, dict], rows: dict) -> None:
    s, report = loaded
    assert report["rows_loaded"] == len(rows) == 33120
    assert report["key_column"] == "zip"
    assert {"population", "density_per_sqmi", "wages_per_resident_usd", "urban_share"} <= set(
        report["figures"]
    )
    assert {"persons_per_housing_unit", "log_density"} <= set(report["derived"])
    assert "latitude" not in report["figures"]  # centroids are not figures
    assert report["ignored_columns"] == ["city"]
    assert report["populated_zips"] == sum(1 for r in rows.values() if _pop(r) >= 1)
    assert report["small_cells"] == sum(1 for r in rows.values() if 1 <= _pop(r) < 100)
    assert report["fallback"]["no_population"] > 0 and report["fallback"]["not_in_table"] > 0
    artifacts = Path(report["path"])
    assert artifacts.parent == s.artifacts_dir / "demographics"
    assert (artifacts.parent / "CURRENT").read_text().strip() == report["version"]


def test_new_york_figures_match_the_table(loaded: tuple[Settings, dict], rows: dict) -> None:
    s, _ = loaded
    out = zip_profile("10001", "US", s)
    row = rows["10001"]
    assert (out["status"], out["place"], out["state_code"]) == ("ok", "New York", "NY")
    assert out["demo_status"] == "ok"
    assert out["demo_population"] == float(row["population"])
    assert out["demo_wages_per_resident_usd"] == float(row["wages_per_resident_usd"])
    assert out["demo_urban_share"] == float(row["urban_share"])
    assert out["demo_zip_type"] == row["zip_type"]
    assert out["demo_persons_per_housing_unit"] == pytest.approx(
        float(row["population"]) / float(row["housing_units"])
    )
    assert out["demo_log_density"] == pytest.approx(math.log10(1 + float(row["density_per_sqmi"])))
    assert "fallback_from" not in out


def test_random_zips_match_the_table(loaded: tuple[Settings, dict], rows: dict) -> None:
    s, _ = loaded
    table = demo.demographics(s)
    sample = random.Random(3).sample(sorted(z for z, r in rows.items() if _pop(r) >= 1), 300)
    for z in sample:
        got = table.lookup(z)
        assert got["source_zip"] == z
        for column in ("population", "housing_units", "land_area_sqmi", "urban_share"):
            text = rows[z][column]
            assert got[column] == (float(text) if text else None), (z, column)


def _nearest_populated(rows: dict, lat: float, lon: float, exclude: str) -> tuple[str, float]:
    best = min(
        (
            (_haversine(lat, lon, float(r["latitude"]), float(r["longitude"])), z)
            for z, r in rows.items()
            if z != exclude and _pop(r) >= 100 and abs(float(r["latitude"]) - lat) < 2
        ),
    )
    return best[1], best[0]


def test_po_box_without_residents_falls_back_to_nearest_populated_zip(
    loaded: tuple[Settings, dict], rows: dict
) -> None:
    s, _ = loaded
    po_boxes = sorted(z for z, r in rows.items() if r["zip_type"] == "po box" and _pop(r) == 0)
    assert po_boxes
    for z in po_boxes[:5]:
        row = rows[z]
        out = zip_profile(z, "US", s)
        assert out["demo_status"] == "fallback", out
        assert out["fallback_reason"] == "no_population"
        source = rows[out["fallback_from"]]
        assert out["fallback_from"] != z and _pop(source) >= 100
        expected_zip, expected_km = _nearest_populated(
            rows, float(row["latitude"]), float(row["longitude"]), z
        )
        assert out["fallback_from"] == expected_zip
        assert out["fallback_km"] == pytest.approx(expected_km, abs=0.05)
        assert out["demo_population"] == float(source["population"])


def test_zip_missing_from_table_falls_back_using_geonames_position(
    loaded: tuple[Settings, dict], rows: dict, geo_dir: Path
) -> None:
    s, _ = loaded
    with (geo_dir / "US.txt").open(encoding="utf-8") as fh:
        geonames = {r["postal_code"]: r for r in csv.DictReader(fh)}
    # 01004 is an Amherst, MA PO-box ZIP that has no ZCTA; any such ZIP in New England will do.
    missing = sorted(z for z in geonames if z not in rows and z.startswith("010"))
    assert missing
    z = missing[0]
    out = zip_profile(z, "US", s)
    assert out["demo_status"] == "fallback" and out["fallback_reason"] == "not_in_table"
    g = geonames[z]
    expected_zip, expected_km = _nearest_populated(
        rows, float(g["latitude"]), float(g["longitude"]), z
    )
    assert out["fallback_from"] == expected_zip
    assert out["fallback_km"] == pytest.approx(expected_km, abs=0.05)
    assert out["fallback_km"] < 30


def test_zip_known_to_the_table_but_not_to_geonames(
    loaded: tuple[Settings, dict], rows: dict, geo_dir: Path
) -> None:
    s, _ = loaded
    with (geo_dir / "US.txt").open(encoding="utf-8") as fh:
        geonames = {r["postal_code"] for r in csv.DictReader(fh)}
    z = next(z for z, r in sorted(rows.items()) if z not in geonames and _pop(r) >= 100)
    out = zip_profile(z, "US", s)
    assert (out["status"], out["geo_status"], out["demo_status"]) == ("ok", "not_found", "ok")
    assert out["demo_population"] == float(rows[z]["population"])
    assert "place" not in out and "reason" not in out


def test_other_countries_get_geo_only(loaded: tuple[Settings, dict]) -> None:
    s, _ = loaded
    out = zip_profile("10115", "DE", s)
    assert (out["status"], out["place"]) == ("ok", "Berlin")
    assert out["demo_status"] == out["segment_status"] == "not_covered"
    assert not any(k.startswith("demo_") and k != "demo_status" for k in out)


def test_far_away_military_zip_gets_no_neighbour_figures(
    loaded: tuple[Settings, dict], rows: dict
) -> None:
    s, _ = loaded
    # APO/FPO ZIPs (090xx) are placed at bases abroad: no US ZIP is near enough to stand in.
    out = zip_profile("09001", "US", s)
    assert out["demo_status"] == "not_found"
    assert not any(k.startswith("demo_") and k not in ("demo_status", "demo_version") for k in out)


def test_small_cell_gets_segment_but_no_figures(loaded: tuple[Settings, dict], rows: dict) -> None:
    s, _ = loaded
    small = sorted(z for z, r in rows.items() if 1 <= _pop(r) < 100)
    out = zip_profile(small[0], "US", s)
    assert out["demo_status"] == "suppressed"
    assert not [
        k for k in out if k.startswith("demo_") and k not in ("demo_status", "demo_version")
    ]
    # The threshold is configurable per call.
    assert zip_profile(small[0], "US", s, min_population=1)["demo_status"] == "ok"
    assert zip_profile("10001", "US", s, min_population=10**6)["demo_status"] == "suppressed"


def test_feature_names_follow_the_table(loaded: tuple[Settings, dict]) -> None:
    """The models learn from what a ZIP is like, in table order: its sizes are in the table
    (and in the profile block) but never features."""
    s, report = loaded
    names = demographic_feature_names(s)
    sizes = {"population", "housing_units", "land_area_sqmi", "water_area_sqmi", "total_wages_usd"}
    assert sizes <= set(report["figures"])
    assert names == [
        "demo_" + f for f in report["figures"] if f not in sizes | {"density_per_sqmi"}
    ]
    assert {"demo_log_density", "demo_urban_share", "demo_persons_per_housing_unit"} <= set(names)
    out = zip_profile("60614", "US", s)
    assert all(isinstance(out[n], float | type(None)) for n in names)


def test_not_loaded_gives_geo_only(geo_dir: Path, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "empty", geo_dir=geo_dir)
    out = zip_profile("10001", "US", s)
    assert (out["status"], out["place"]) == ("ok", "New York")
    assert out["demo_status"] == "not_loaded"
    assert out["segment_status"] == "not_built"
    assert demographic_feature_names(s) == []


def test_richer_table_extra_columns_are_picked_up(
    shared_data: Path, geo_dir: Path, tmp_path: Path, rows: dict
) -> None:
    """ACS-style extras: a numeric median with '250,000+' and '-' cells, a text column."""
    src = shared_data / "zcta_demographics.csv"
    richer = tmp_path / "acs.csv"
    rng = random.Random(11)
    ages: dict[str, float] = {}
    with src.open(encoding="utf-8") as fh, richer.open("w", encoding="utf-8", newline="") as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(
            out, [*reader.fieldnames, "median_age", "median_home_value", "notes"]
        )
        writer.writeheader()
        for i, row in enumerate(reader):
            ages[row["zip"]] = round(rng.uniform(20, 60), 1)
            value = (
                "250,000+"
                if i % 50 == 0
                else ("-" if i % 97 == 0 else f"{rng.randint(50, 240) * 1000:,}")
            )
            writer.writerow(
                {
                    **row,
                    "median_age": ages[row["zip"]],
                    "median_home_value": value,
                    "notes": f"n{i}",
                }
            )
    s = Settings(data_dir=tmp_path / "var", geo_dir=geo_dir)
    report = demo.load_demographics(richer, s)
    assert {"median_age", "median_home_value"} <= set(report["figures"])
    assert "notes" in report["ignored_columns"]
    assert "demo_median_age" in demographic_feature_names(s)
    out = zip_profile("10001", "US", s)
    assert out["demo_median_age"] == ages["10001"]
    table = demo.demographics(s)
    zips = sorted(rows)
    assert table.lookup(zips[0])["median_home_value"] == 250000.0  # "250,000+" -> 250000
    assert table.lookup(zips[97])["median_home_value"] is None  # "-" -> missing


def _load(tmp_path: Path, text: str, name: str = "t.csv", **kwargs: object) -> dict:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return demo.load_demographics(path, Settings(data_dir=tmp_path / "var", geo_dir=None), **kwargs)


def test_semicolon_table_with_lost_leading_zeros(tmp_path: Path) -> None:
    report = _load(
        tmp_path,
        "ZCTA;Population;Median_Age;latitude;longitude\n601;18570;35.5;18.18;-66.75\n"
        "10001;21102;36.1;40.75;-74.0\nabc;5;1;0;0\n10001;1;1;0;0\n",
    )
    assert report["key_column"] == "zcta" and report["source"]["delimiter"] == ";"
    assert report["rows_loaded"] == 2
    reasons = [(i["row"], i["reason"]) for i in report["issues"]]
    assert any(row == 4 and "not a 5-digit ZIP" in reason for row, reason in reasons)
    assert any(row == 5 and "duplicate ZIP 10001" in reason for row, reason in reasons)
    table = demo.demographics(Settings(data_dir=tmp_path / "var", geo_dir=None))
    assert table.lookup("00601")["median_age"] == 35.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("zip,population\n", "no data rows"),
        ("code,population\n10001,5\n", "no ZIP key column"),
        ("zip,residents\n10001,5\n", "'population'"),
        ("zip,population\nxx,5\n", "no row has a valid ZIP"),
        ("zip,population\n10001,many\n10002,lots\n", "'population' is not numeric"),
    ],
)
def test_unusable_tables_fail_clearly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(demo.DemographicsError, match=message):
        _load(tmp_path, text)


def test_failed_load_keeps_previous_version(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "var", geo_dir=None)
    first = _load(tmp_path, "zip,population\n10001,21102\n")
    with pytest.raises(demo.DemographicsError):
        _load(tmp_path, "zip,people\n10001,5\n")
    assert demo.demographics(s).version == first["version"]


def test_cli_load_and_lookup(
    shared_data: Path, geo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson

    from app.cli.geo import geo as geo_cli

    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OFFERWISE_GEO_DIR", str(geo_dir))
    runner = CliRunner()
    result = runner.invoke(
        geo_cli, ["load-demographics", str(shared_data / "zcta_demographics.csv")]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["rows_loaded"] == 33120
    result = runner.invoke(geo_cli, ["lookup", "10001"])
    out = orjson.loads(result.output)
    assert (out["place"], out["demo_status"]) == ("New York", "ok")
    result = runner.invoke(geo_cli, ["load-demographics", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "file not found" in result.output


def test_income_join_reads_the_acs_codes_as_bounds(tmp_path: Path) -> None:
    """The ACS income file's codes: 250001 is "250,000 or more", 2499 "under 2,500", empty no
    estimate; a ZIP only the income file knows adds nothing, a column both have stays the main
    table's."""
    main = tmp_path / "main.csv"
    main.write_text(
        "zip,population,state\n10001,21102,NY\n10002,81410,NY\n10003,56024,NY\n"
        "10004,3089,NY\n10005,7135,NY\n"
    )
    income = tmp_path / "income.csv"
    income.write_text(
        "zip,median_household_income_usd,state\n10001,101409,NY\n10002,250001,NY\n"
        "10003,2499,NJ\n10004,,NY\n99950,45000,AK\n10001,5,NY\n"
    )
    s = Settings(data_dir=tmp_path / "var", geo_dir=None)
    report = demo.load_demographics(main, s, joins=[income])
    assert "median_household_income_usd" in report["figures"]
    (joined,) = report["joined"]
    assert joined["columns"] == ["median_household_income_usd"]
    assert joined["kept_from_main_table"] == ["state"]
    assert (joined["main_zips_matched"], joined["zips_not_in_main_table"]) == (4, 1)
    assert joined["duplicate_keys"] == 1  # the first row of a ZIP is kept
    assert report["range_codes"] == {
        "median_household_income_usd": {"at least 250,000": 1, "under 2,500": 1}
    }
    table = demo.demographics(s)
    income_of = {z: table.lookup(z)["median_household_income_usd"] for z in ("10001", "10002",
                 "10003", "10004", "10005")}  # fmt: skip
    assert income_of == {"10001": 101409.0, "10002": 250000.0, "10003": 2500.0, "10004": None,
                         "10005": None}  # fmt: skip
    assert table.lookup("10003")["state"] == "NY"
    assert "demo_median_household_income_usd" in demographic_feature_names(s)
    out = zip_profile("10002", "US", s)
    assert out["demo_median_household_income_usd"] == 250000.0


def test_range_codes_only_in_the_columns_they_belong_to(tmp_path: Path) -> None:
    """2499 is a code in a median income column only; Census annotation values never count."""
    report = _load(
        tmp_path,
        "zip,population,median_household_income,houses,median_home_value\n"
        "10001,2499,2499,2499,9999\n10002,500,-666666666,12,2000001\n",
    )
    assert report["range_codes"] == {
        "median_household_income": {"under 2,500": 1},
        "median_home_value": {"under 10,000": 1, "at least 2,000,000": 1},
    }
    table = demo.demographics(Settings(data_dir=tmp_path / "var", geo_dir=None))
    first, second = table.lookup("10001"), table.lookup("10002")
    assert (first["population"], first["houses"], first["median_household_income"]) == (
        2499.0, 2499.0, 2500.0,
    )  # fmt: skip
    assert second["median_household_income"] is None and second["median_home_value"] == 2e6


def test_shared_income_file_joins_the_census_table(
    shared_data: Path, geo_dir: Path, tmp_path: Path, rows: dict
) -> None:
    with (shared_data / "zcta_income_acs.csv").open(encoding="utf-8") as fh:
        incomes = {row["zip"]: row["median_household_income_usd"] for row in csv.DictReader(fh)}
    s = Settings(data_dir=tmp_path / "var", geo_dir=geo_dir)
    report = demo.load_demographics(
        shared_data / "zcta_demographics.csv", s, joins=[shared_data / "zcta_income_acs.csv"]
    )
    assert report["joined"][0]["main_zips_matched"] == len(set(incomes) & set(rows)) == 32921
    coded = report["range_codes"]["median_household_income_usd"]
    in_main = [incomes[z] for z in rows if z in incomes]
    assert coded == {"at least 250,000": in_main.count("250001"),
                     "under 2,500": in_main.count("2499")}  # fmt: skip
    table = demo.demographics(s)
    codes = {"": None, "250001": 250000.0, "2499": 2500.0}
    bounds = [z for z in rows if incomes.get(z) in ("250001", "2499")]
    empty = [z for z in rows if incomes.get(z) == ""][:20]
    some = random.Random(5).sample(sorted(set(rows) & set(incomes)), 400) + bounds + empty
    for z in some:
        want = codes[incomes[z]] if incomes[z] in codes else float(incomes[z])
        assert table.figures_of(int(table.own[int(z)]))["median_household_income_usd"] == want, z
    assert zip_profile("10001", "US", s)["demo_median_household_income_usd"] == float(
        incomes["10001"]
    )


def test_cli_join_and_the_settings_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson

    from app.cli.geo import geo as geo_cli
    from app.settings import load_settings

    main, income = tmp_path / "main.csv", tmp_path / "income.csv"
    main.write_text("zip,population\n10001,21102\n")
    income.write_text("zip,median_household_income_usd\n10001,250001\n")
    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("OFFERWISE_DEMOGRAPHICS_JOIN", raising=False)
    result = CliRunner().invoke(geo_cli, ["load-demographics", str(main), "--join", str(income)])
    assert result.exit_code == 0, result.output
    assert "median_household_income_usd" in orjson.loads(result.output)["figures"]
    env = {"OFFERWISE_DEMOGRAPHICS_JOIN": f"{income}{os.pathsep}{main}"}
    assert load_settings(env).demographics_joins == (income.resolve(), main.resolve())
    assert load_settings({}).demographics_joins == ()


def test_arrays_are_shared_file_mappings(loaded: tuple[Settings, dict]) -> None:
    """Workers must map the artifact files (shared page cache), not hold private copies."""
    import mmap

    s, _ = loaded
    table = demo.demographics(s)
    for array in (table.values, table.source, table.own, table.km):
        base = array
        while base is not None and not isinstance(base, mmap.mmap):
            base = getattr(base, "base", None)
        assert isinstance(base, mmap.mmap)
        assert not array.flags.writeable


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.one_of(
        st.text(max_size=20),
        st.from_regex(r"[0-9 \-]{0,11}", fullmatch=True),
        st.integers(),
        st.none(),
    ),
    country=st.sampled_from(["US", "us", "DE", "GB", "FR", "??", ""]),
)
def test_zip_profile_never_raises(
    loaded: tuple[Settings, dict], code: object, country: str
) -> None:
    s, _ = loaded
    out = zip_profile(code, country, s)  # type: ignore[arg-type]
    assert out["status"] in geo.STATUSES
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in out.values())
