"""ZIP micro-segments built on the real ZCTA table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from enrichment import demographics as demo
from enrichment import segments as seg
from enrichment.zip_profile import zip_profile
from store.config import Settings

K = 8


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> dict[str, dict[str, str]]:
    with (shared_data / "zcta_demographics.csv").open(encoding="utf-8") as fh:
        return {row["zip"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def built(
    shared_data: Path, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, dict]:
    s = Settings(data_dir=tmp_path_factory.mktemp("var"), geo_dir=geo_dir)
    demo.load_demographics(shared_data / "zcta_demographics.csv", s)
    return s, seg.build_segments(s, k=K, seed=1)


def test_stored_segmentation_is_complete(built: tuple[Settings, dict]) -> None:
    s, summary = built
    folder = s.artifacts_dir / "segments" / summary["version"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["k"] == K and meta["seed"] == 1
    assert meta["created_at"].endswith("Z")
    assert meta["demographics_version"] == demo.demographics(s).version
    names = [f["name"] for f in meta["features"]]
    assert "wages_per_resident_usd" in names and "log_density" in names
    assert "population" not in names and "total_wages_usd" not in names  # sizes, not character
    assert len(meta["segments"]) == K
    for s_ in meta["segments"]:
        assert set(s_["center_z"]) == set(names)
        assert s_["mean_profile"]["population"] is not None
    info = seg.segmentation_info(s)
    assert info["version"] == summary["version"] and "segments" not in info


def test_assignments_cover_all_populated_zips(built: tuple[Settings, dict], rows: dict) -> None:
    s, _ = built
    populated = [z for z, r in rows.items() if int(r["population"]) >= 1]
    ids = [seg.segment_for_zip(z, s) for z in populated]
    assert all(i is not None and 0 <= i < K for i in ids)
    listed = seg.list_segments(s)
    assert sum(x["zips"] for x in listed) == len(populated)
    assert sum(x["population"] for x in listed) == sum(
        int(rows[z]["population"]) for z in populated
    )
    counts = np.bincount(np.array(ids), minlength=K)
    assert [x["zips"] for x in listed] == counts.tolist()
    # ids are ordered by population, largest first
    pops = [x["population"] for x in listed]
    assert pops == sorted(pops, reverse=True)


def test_fallback_zip_takes_the_segment_of_its_source(
    built: tuple[Settings, dict], rows: dict
) -> None:
    s, _ = built
    po_box = next(
        z for z, r in sorted(rows.items()) if r["zip_type"] == "po box" and r["population"] == "0"
    )
    out = zip_profile(po_box, "US", s)
    assert out["segment_id"] == seg.segment_for_zip(out["fallback_from"], s)
    assert seg.segment_for_zip("99999", s) is None
    assert seg.segment_for_zip("not a zip", s) is None


def test_descriptions_are_distinct_and_readable(built: tuple[Settings, dict]) -> None:
    s, _ = built
    listed = seg.list_segments(s)
    labels = [x["label"] for x in listed]
    assert all(labels) and len(set(labels)) == K
    for x in listed:
        assert x["description"].startswith(x["label"])
        assert f"{x['zips']:,} ZIP areas" in x["description"]


def test_words_match_the_figures(built: tuple[Settings, dict], rows: dict) -> None:
    """Manhattan's segment reads urban; the segment of the sparsest large rural ZIP reads rural."""
    s, _ = built
    listed = {x["id"]: x for x in seg.list_segments(s)}
    manhattan = listed[seg.segment_for_zip("10021", s)]
    assert any(w in manhattan["label"].lower() for w in ("urban", "suburbs"))
    assert manhattan["mean_profile"]["density_per_sqmi"] > 1000
    rural_zip = min(
        (z for z, r in rows.items() if int(r["population"]) >= 1000 and r["density_per_sqmi"]),
        key=lambda z: float(rows[z]["density_per_sqmi"]),
    )
    rural = listed[seg.segment_for_zip(rural_zip, s)]
    assert "rural" in rural["label"].lower() or "countryside" in rural["label"].lower()
    # The wage-rich segment says so: the segment with the highest wage center uses the word.
    richest = max(listed.values(), key=lambda x: x["center_z"]["wages_per_resident_usd"])
    if richest["center_z"]["wages_per_resident_usd"] >= seg.NOTABLE_Z:
        assert "high wages" in richest["label"].lower()


@pytest.fixture(scope="module")
def with_income(
    shared_data: Path, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The census table with ACS median household income joined, as the README loads it."""
    s = Settings(data_dir=tmp_path_factory.mktemp("var"), geo_dir=geo_dir)
    demo.load_demographics(
        shared_data / "zcta_demographics.csv", s, joins=[shared_data / "zcta_income_acs.csv"]
    )
    return s


def _misreadings(listed: list[dict]) -> list[str]:
    """Labels whose words contradict each other or the segment's own urban share."""
    out = []
    for x in listed:
        label, share = x["label"], x["mean_profile"]["urban_share"]
        out += [f"{label}: {c}" for c in seg.label_conflicts(label)]
        if "mostly urban" in label.lower() and share < seg.URBAN_MAJORITY:
            out.append(f"{label}: urban share {share:.0%}")
        if "mostly rural" in label.lower() and share >= seg.URBAN_MAJORITY:
            out.append(f"{label}: urban share {share:.0%}")
    return out


def test_the_label_check_finds_contradictions() -> None:
    """The check below can fail: it catches the label this module used to write."""
    assert seg.label_conflicts("Small towns and countryside, mostly urban")
    assert seg.label_conflicts("Suburbs, very sparse")
    assert seg.label_conflicts("Remote rural, high wages, very low household incomes")
    assert seg.label_conflicts("Suburbs, large households, small households (variant 2)")
    assert not seg.label_conflicts("Small towns and countryside, more urban")  # comparative
    assert not seg.label_conflicts("Outer suburbs and small towns, mostly rural")
    assert _misreadings([{"label": "Mostly urban", "mean_profile": {"urban_share": 0.3}}])


@pytest.mark.parametrize(("k", "seed"), [(40, 0), (12, 3)])
def test_segments_speak_of_household_income_and_never_contradict_themselves(
    with_income: Settings, k: int, seed: int
) -> None:
    summary = seg.build_segments(with_income, k=k, seed=seed)
    names = [f["name"] for f in summary["features"]]
    assert "median_household_income_usd" in names
    assert "wages_per_resident_usd" not in names  # superseded by this decade's income
    listed = seg.list_segments(with_income)
    assert _misreadings(listed) == []
    labels = [x["label"] for x in listed]
    assert len(set(labels)) == k
    assert not any("wages" in label for label in labels)
    richest = max(listed, key=lambda x: x["center_z"]["median_household_income_usd"])
    assert "high household incomes" in richest["label"].lower()
    poorest = min(listed, key=lambda x: x["center_z"]["median_household_income_usd"])
    assert "low household incomes" in poorest["label"].lower()
    assert richest["mean_profile"]["median_household_income_usd"] > 100_000
    assert "median household income" in richest["description"]
    assert "wages per resident" not in richest["description"]


def test_labels_without_income_do_not_contradict_themselves(
    built: tuple[Settings, dict],
) -> None:
    s, _ = built
    assert _misreadings(seg.list_segments(s)) == []


def test_same_seed_gives_same_segmentation(
    built: tuple[Settings, dict], shared_data: Path, geo_dir: Path, tmp_path: Path
) -> None:
    s, first = built
    other = Settings(data_dir=tmp_path / "var", geo_dir=geo_dir)
    demo.load_demographics(shared_data / "zcta_demographics.csv", other)
    second = seg.build_segments(other, k=K, seed=1)
    a = seg.list_segments(s)
    b = seg.list_segments(other)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    assert [x["center_z"] for x in a] == [x["center_z"] for x in b]
    assert np.array_equal(seg.segmentation(s).assign, seg.segmentation(other).assign)
    assert first["inertia"] == pytest.approx(second["inertia"])


def test_rebuild_makes_a_new_live_version(
    built: tuple[Settings, dict], shared_data: Path, geo_dir: Path, tmp_path: Path
) -> None:
    s = Settings(data_dir=tmp_path / "var", geo_dir=geo_dir)
    demo.load_demographics(shared_data / "zcta_demographics.csv", s)
    first = seg.build_segments(s, k=3, seed=0)
    import time

    time.sleep(1.1)  # version ids carry the build second
    second = seg.build_segments(s, k=4, seed=0)
    assert first["version"] != second["version"]
    assert seg.segmentation_info(s)["k"] == 4 and len(seg.list_segments(s)) == 4
    assert (s.artifacts_dir / "segments" / first["version"] / "meta.json").is_file()  # kept


def test_extra_feature_from_richer_table_is_clustered(
    shared_data: Path, geo_dir: Path, tmp_path: Path
) -> None:
    src = shared_data / "zcta_demographics.csv"
    richer = tmp_path / "acs.csv"
    with src.open(encoding="utf-8") as fh, richer.open("w", encoding="utf-8", newline="") as out:
        reader = csv.DictReader(fh)
        writer = csv.DictWriter(out, [*reader.fieldnames, "median_age"])
        writer.writeheader()
        for i, row in enumerate(reader):
            writer.writerow({**row, "median_age": 25 + (i * 7919) % 40})
    s = Settings(data_dir=tmp_path / "var", geo_dir=geo_dir)
    demo.load_demographics(richer, s)
    summary = seg.build_segments(s, k=4, seed=0)
    assert "median_age" in [f["name"] for f in summary["features"]]
    assert all("median_age" in x["center_z"] for x in seg.list_segments(s))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 1}, "k must be between"),
        ({"k": 10**6}, "k must be between"),
        ({"features": ["nope"]}, "unknown feature"),
    ],
)
def test_bad_requests_fail_clearly(
    built: tuple[Settings, dict], kwargs: dict, message: str
) -> None:
    s, _ = built
    with pytest.raises(seg.SegmentsError, match=message):
        seg.build_segments(s, **kwargs)


def test_nothing_built_yet(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "empty", geo_dir=None)
    assert seg.list_segments(s) == []
    assert seg.segment_for_zip("10001", s) is None
    assert seg.segmentation_info(s) is None
    with pytest.raises(seg.SegmentsError, match="load-demographics"):
        seg.build_segments(s, k=3)


def test_profile_carries_segment_and_small_cells_keep_it(
    built: tuple[Settings, dict], rows: dict
) -> None:
    s, _ = built
    out = zip_profile("10001", "US", s)
    assert out["segment_status"] == "ok"
    assert out["segment_label"] == seg.list_segments(s)[out["segment_id"]]["label"]
    small = next(z for z, r in sorted(rows.items()) if 1 <= int(r["population"]) < 100)
    out = zip_profile(small, "US", s)
    assert out["demo_status"] == "suppressed" and out["segment_id"] is not None


def test_cli_build_and_list(
    shared_data: Path, geo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson

    from app.cli.geo import geo as geo_cli
    from app.cli.geo import segments as segments_cli

    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("OFFERWISE_GEO_DIR", str(geo_dir))
    runner = CliRunner()
    result = runner.invoke(segments_cli, ["build", "--k", "3"])
    assert result.exit_code == 2 and "load-demographics" in result.output
    result = runner.invoke(
        geo_cli, ["load-demographics", str(shared_data / "zcta_demographics.csv")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(segments_cli, ["build", "--k", "5", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["k"] == 5
    listed = orjson.loads(runner.invoke(segments_cli, ["list"]).output)
    assert len(listed) == 5 and all(x["description"] for x in listed)
    assert "mean_profile" in orjson.loads(runner.invoke(segments_cli, ["list", "--full"]).output)[0]
    result = runner.invoke(segments_cli, ["build", "--features", "bogus"])
    assert result.exit_code == 2 and "unknown feature" in result.output
