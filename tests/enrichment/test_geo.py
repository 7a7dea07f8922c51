"""ZIP/postal-code geo on the real GeoNames files, checked against pgeocode itself."""

from __future__ import annotations

import csv
import random
import shutil
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enrichment import geo
from store.config import Settings


@pytest.fixture(scope="module")
def geo_settings(geo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    geo.reset_cache()
    return Settings(data_dir=tmp_path_factory.mktemp("var"), geo_dir=geo_dir)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails the test (pgeocode fetches missing countries by default)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_new_york_zip(geo_settings: Settings) -> None:
    out = geo.lookup("10001", "US", geo_settings)
    assert out["status"] == "ok"
    assert (out["place"], out["state_code"], out["state"]) == ("New York", "NY", "New York")
    assert out["county"] == "New York"
    assert 40.6 < out["latitude"] < 40.9 and -74.1 < out["longitude"] < -73.8


@pytest.mark.parametrize(
    "raw", ["10001", " 10001 ", "10001-1234", "100011234", "10001 1234", 10001]
)
def test_us_forms_normalize_to_five_digits(geo_settings: Settings, raw: object) -> None:
    out = geo.lookup(raw, "us", geo_settings)
    assert (out["status"], out["postal_code"], out["place"]) == ("ok", "10001", "New York")


def test_spreadsheet_stripped_zip_is_zero_padded(geo_settings: Settings) -> None:
    out = geo.lookup("2134", "US", geo_settings)  # 02134 lost its leading zero in a CSV export
    assert out["postal_code"] == "02134"
    assert out["state_code"] == "MA"


@pytest.mark.parametrize(
    ("country", "raw", "code", "place", "state_code"),
    [
        ("DE", "10115", "10115", "Berlin", "BE"),
        ("de", "DE-10115", "10115", "Berlin", "BE"),
        ("GB", "sw1a 1aa", "SW1A", None, "ENG"),
        ("GB", "SW1A1AA", "SW1A", None, "ENG"),
        ("UK", "M9 8AB", "M9", "Manchester", "ENG"),
        ("GB", "M9", "M9", "Manchester", "ENG"),
        ("CA", "K1A 0B1", "K1A", None, "ON"),
        ("CA", "k1a0b1", "K1A", None, "ON"),
        ("NL", "1012 AB", "1012", "Amsterdam", None),
        ("CH", "8001", "8001", "Zürich", "ZH"),
    ],
)
def test_other_countries(
    geo_settings: Settings,
    country: str,
    raw: str,
    code: str,
    place: str | None,
    state_code: str | None,
) -> None:
    out = geo.lookup(raw, country, geo_settings)
    assert out["status"] == "ok", out
    assert out["postal_code"] == code
    if place:
        assert out["place"] == place
    if state_code:
        assert out["state_code"] == state_code
    assert isinstance(out["latitude"], float) and isinstance(out["longitude"], float)


@pytest.mark.parametrize(
    ("raw", "country", "status"),
    [
        ("", "US", "invalid"),
        ("   ", "US", "invalid"),
        ("ABCDE", "US", "invalid"),
        ("123456", "US", "invalid"),
        ("12", "US", "invalid"),
        ("1234-5678", "US", "invalid"),
        (None, "US", "invalid"),
        (12.5, "US", "invalid"),
        ("10001", "", "invalid"),
        ("10001", "USA", "invalid"),
        ("10001", None, "invalid"),
        ("10001", "ZZ", "invalid"),  # not a country GeoNames has
        ("K1A 0B1", "GB", "invalid"),
        ("1" * 40, "DE", "invalid"),
        ("99999", "US", "not_found"),
        ("00000", "US", "not_found"),
        ("ZZ9", "GB", "not_found"),
        ("75001", "FR", "unavailable"),  # valid country, no file in the data folder
    ],
)
def test_bad_and_unknown_codes_answer_clearly(
    geo_settings: Settings, raw: object, country: object, status: str
) -> None:
    out = geo.lookup(raw, country, geo_settings)
    assert out["status"] == status
    assert out["reason"]
    assert "place" not in out


def test_missing_country_file_is_not_downloaded(tmp_path: Path, geo_dir: Path) -> None:
    only_de = tmp_path / "geo"
    only_de.mkdir()
    shutil.copy(geo_dir / "DE.txt", only_de / "DE.txt")
    s = Settings(data_dir=tmp_path / "var", geo_dir=only_de)
    out = geo.lookup("10001", "US", s)
    assert out["status"] == "unavailable"
    assert "country not available" in out["reason"]
    assert geo.lookup("10115", "DE", s)["place"] == "Berlin"
    assert geo.available_countries(s) == ["DE"]
    assert sorted(p.name for p in only_de.iterdir()) == ["DE.txt"]  # nothing fetched or written


def test_no_geo_folder_configured(tmp_path: Path) -> None:
    out = geo.lookup("10001", "US", Settings(data_dir=tmp_path, geo_dir=None))
    assert out["status"] == "unavailable"
    assert "OFFERWISE_GEO_DIR" in out["reason"]


@pytest.mark.parametrize("country", ["US", "DE", "GB", "CA", "AT", "NL"])
def test_matches_pgeocode_on_random_real_codes(
    geo_settings: Settings, geo_dir: Path, country: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our dict index must answer what pgeocode's own (slow) query answers."""
    import pgeocode

    monkeypatch.setattr(pgeocode, "STORAGE_DIR", str(geo_dir))
    nomi = pgeocode.Nominatim(country)
    with (geo_dir / f"{country}.txt").open(encoding="utf-8") as fh:
        codes = sorted({row["postal_code"] for row in csv.DictReader(fh)})
    sample = random.Random(7).sample(codes, 150)
    expected = nomi.query_postal_code(sample)
    for code, (_, row) in zip(sample, expected.iterrows(), strict=True):
        out = geo.lookup(code, country, geo_settings)
        assert out["status"] == "ok", (code, out)
        assert out["latitude"] == pytest.approx(row["latitude"], abs=1e-4), code
        assert out["longitude"] == pytest.approx(row["longitude"], abs=1e-4), code
        assert out["state"] == (row["state_name"] if isinstance(row["state_name"], str) else None)
        first_place = str(row["place_name"]).split(", ")[0]
        assert out["place"].startswith(first_place), (code, out["place"], row["place_name"])


def test_lookup_is_fast_after_first_load(geo_settings: Settings) -> None:
    import time

    geo.lookup("10001", "US", geo_settings)
    started = time.perf_counter()
    for _ in range(2000):
        geo.lookup("94105", "US", geo_settings)
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 200e-6  # a dict get, not a pandas merge (~1 ms)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.one_of(
        st.text(max_size=24),
        st.from_regex(r"[0-9A-Za-z \-]{0,12}", fullmatch=True),
        st.integers(),
        st.none(),
        st.floats(allow_nan=True),
        st.binary(max_size=8),
    ),
    country=st.one_of(
        st.sampled_from(["US", "us", "DE", "GB", "CA", "NL", "FR", "UK", "XX", "", "U"]),
        st.text(max_size=4),
        st.none(),
    ),
)
def test_lookup_never_raises(geo_settings: Settings, code: object, country: object) -> None:
    out = geo.lookup(code, country, geo_settings)
    assert out["status"] in geo.STATUSES
    if out["status"] == "ok":
        assert out["postal_code"] and isinstance(out["latitude"], float)
    else:
        assert isinstance(out["reason"], str) and out["reason"]
