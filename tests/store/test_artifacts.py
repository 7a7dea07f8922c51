"""The artifact store's promises, on both implementations (the local data dir and an
S3-compatible object store, moto in server mode): keys stay inside the store, a reader never
sees part of a file or of a version, a crash before publish changes nothing; on a local disk
every write is fsynced the same way (file, then the directory naming it)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enrichment.demographics import publish_to
from store.artifacts import (
    ARTIFACTS,
    CRM,
    EVENTS,
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    InvalidKey,
    LocalArtifacts,
    artifacts_for,
    atomic_path,
)
from store.artifacts.s3 import S3Artifacts
from store.config import Settings
from tests.object_store import REGION

Ident = tuple[int, int]


def ident(path: Path) -> Ident:
    st_ = os.stat(path)
    return st_.st_dev, st_.st_ino


@pytest.fixture
def local(tmp_path: Path) -> LocalArtifacts:
    return LocalArtifacts(tmp_path / "data")


def s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> S3Artifacts:
    url = request.getfixturevalue("s3_url")
    endpoint = request.getfixturevalue("s3_server")
    return S3Artifacts(url, tmp_path / "cache", endpoint_url=endpoint, region=REGION)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each contract test runs on both implementations."""
    if request.param == "local":
        return LocalArtifacts(tmp_path / "data")
    return s3_store(request, tmp_path)


@pytest.fixture
def s3(request: pytest.FixtureRequest, tmp_path: Path) -> S3Artifacts:
    return s3_store(request, tmp_path)


def everything(store: ArtifactStore, prefix: str) -> list[str]:
    """Every name under ``prefix``, hidden ones included (what a crash would leave): files and
    folders on a disk, objects and the folders their keys imply in a bucket."""
    if isinstance(store, LocalArtifacts):
        return on_disk(store.root / prefix)
    from pyarrow import fs as pafs

    base = store._p(prefix, root_ok=True)
    names = set()
    for info in store.fs.get_file_info(
        pafs.FileSelector(base, recursive=True, allow_not_found=True)
    ):
        if info.type == pafs.FileType.File:
            rel = info.path[len(base) + 1 :]
            parts = rel.split("/")
            names.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(names)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[Ident]]:
    """(device, inode) of every file and folder fsynced while the test runs."""
    seen: set[Ident] = set()
    real = os.fsync

    def record(fd: int) -> None:
        st_ = os.fstat(fd)
        seen.add((st_.st_dev, st_.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    yield seen


def on_disk(folder: Path) -> list[str]:
    """Every name under ``folder``, hidden ones included (what a crash would leave)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- keys ---------------------------------------------------------------------------------

segment = st.from_regex(r"[A-Za-z0-9_=-][A-Za-z0-9_.=-]{0,11}", fullmatch=True)
keys = st.lists(segment, min_size=1, max_size=4).map("/".join)


@settings(max_examples=75, deadline=None)
@given(st.lists(st.tuples(keys, st.binary(max_size=64)), min_size=1, max_size=6))
def test_files_round_trip_and_are_listed_under_their_parent(
    items: list[tuple[str, bytes]],
) -> None:
    wanted = dict(items)
    # A key cannot be a file and a folder at once: keep keys none of which holds another.
    wanted = {
        k: v for k, v in wanted.items() if not any(o.startswith(k + "/") for o in wanted if o != k)
    }
    # fsync is pinned by the tests below; here its flush latency would only slow the examples.
    with tempfile.TemporaryDirectory() as tmp, mock.patch("os.fsync"):
        store = LocalArtifacts(Path(tmp))
        for key, data in wanted.items():
            store.write_bytes(key, data)
        for key, data in wanted.items():
            assert store.exists(key)
            assert store.read_bytes(key) == data
            with store.open(key) as fh:
                assert fh.read() == data
            parent, _, name = key.rpartition("/")
            assert name in store.list_names(parent)
        assert not [p for p in on_disk(Path(tmp)) if p.rsplit("/", 1)[-1].startswith(".")]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab./\\\x00 -"), max_size=12) | st.text(max_size=12))
def test_a_key_is_refused_or_stays_inside_the_store(key: str) -> None:
    root = Path("/nonexistent/root")
    store = LocalArtifacts(root)
    try:
        path = store.local_path(key)
    except InvalidKey as err:
        assert repr(key) in str(err) or "empty" in str(err)
        return
    assert path == root or root in path.parents
    assert ".." not in path.parts and not any(p.startswith(".") for p in path.parts[3:])


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("crm/../../etc", r"'\.\.' segment"),
        ("..", r"'\.\.' segment"),
        ("crm/./acme", r"'\.' segment"),
        ("crm//acme", "empty segment"),
        ("crm/acme/", "empty segment"),
        ("crm/.v3.staging", "reserved for the store's temp and staging files"),
        ("crm\\acme", "backslash"),
        ("crm/ac\x00me", "NUL"),
    ],
)
def test_unsafe_keys_fail_with_a_clear_error(store: ArtifactStore, key: str, reason: str) -> None:
    for call in (store.read_bytes, store.exists, lambda k: store.write_bytes(k, b"x")):
        with pytest.raises(InvalidKey, match=reason):
            call(key)
    assert everything(store, "") == []  # refused before touching the disk or the bucket


def test_prefixes_are_the_keyed_twins_of_the_settings_dirs(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "var")
    store = artifacts_for(s)
    assert store.local_path("") == s.data_dir
    assert store.local_path(EVENTS) == s.events_dir
    assert store.local_path(CRM) == s.crm_dir
    assert store.local_path(ARTIFACTS) == s.artifacts_dir


# -- atomic, durable files ----------------------------------------------------------------


def test_a_reader_sees_the_old_file_until_the_new_one_is_whole(store: ArtifactStore) -> None:
    store.write_bytes("models/acme/scorer.npz", b"old")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(b"half of the ")
            fh.flush()
            assert store.read_bytes("models/acme/scorer.npz") == b"old"
            assert store.list_names("models/acme") == ["scorer.npz"]
            fh.write(b"new file")

    store.write_file("models/acme/scorer.npz", write)
    assert store.read_bytes("models/acme/scorer.npz") == b"half of the new file"


def test_a_writer_that_fails_leaves_the_old_file_and_no_temp(store: ArtifactStore) -> None:
    store.write_bytes("crm/acme/v1/customers.parquet", b"old")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.write_file("crm/acme/v1/customers.parquet", write)
    assert store.read_bytes("crm/acme/v1/customers.parquet") == b"old"
    assert everything(store, "crm/acme/v1") == ["customers.parquet"]


def test_missing_files_raise_a_typed_error(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound, match="no/such"):
        store.read_bytes("no/such")
    with pytest.raises(ArtifactNotFound):
        store.open("no/such")
    assert store.list_names("no") == [] and store.versions("no") == []
    assert not store.exists("no/such")


def test_every_file_write_fsyncs_the_file_and_its_directories(
    local: LocalArtifacts, fsynced: set[Ident]
) -> None:
    store = local
    store.write_bytes("artifacts/demographics/CURRENT", b"d1\n")
    d = store.root / "artifacts/demographics"
    # The file, its directory, and each folder made on the way (in its parent's entry).
    assert {ident(d / "CURRENT"), ident(d), ident(d.parent), ident(store.root)} <= fsynced

    fsynced.clear()
    store.set_pointer("artifacts/demographics/CURRENT", "d2")
    assert {ident(d / "CURRENT"), ident(d)} <= fsynced

    fsynced.clear()
    store.delete("artifacts/demographics/CURRENT")
    assert ident(d) in fsynced


def test_atomic_path_for_files_outside_a_store(tmp_path: Path, fsynced: set[Ident]) -> None:
    out = tmp_path / "scores.csv"
    with atomic_path(out) as tmp, open(tmp, "w") as fh:
        fh.write("id,score\n")
        assert not out.exists()
    assert out.read_text() == "id,score\n"
    assert {ident(out), ident(tmp_path)} <= fsynced
    with pytest.raises(ValueError, match="bad row"), atomic_path(out) as tmp:
        tmp.write_text("partial")
        raise ValueError("bad row")
    assert out.read_text() == "id,score\n" and on_disk(tmp_path) == ["scores.csv"]


# -- versions, pointers, pruning ----------------------------------------------------------


def publish_version(store: ArtifactStore, prefix: str, version: str, files: dict) -> str:
    with store.staging(prefix) as staged:
        for name, data in files.items():
            (staged.path / name).parent.mkdir(parents=True, exist_ok=True)
            (staged.path / name).write_bytes(data)
        return store.publish(staged, version)


def test_a_version_appears_whole_or_not_at_all(store: ArtifactStore) -> None:
    prefix = "artifacts/models/acme"
    assert publish_version(store, prefix, "m1", {"result.json": b"{}"}) == f"{prefix}/m1"
    store.set_pointer(f"{prefix}/CURRENT", "m1")
    with pytest.raises(RuntimeError, match="killed"), store.staging(prefix) as staged:
        (staged.path / "models").mkdir()
        (staged.path / "models/0.json").write_bytes(b"{...")
        assert store.versions(prefix) == ["m1"]
        assert store.list_names(prefix) == ["CURRENT", "m1"]
        raise RuntimeError("killed between staging and publish")
    assert store.versions(prefix) == ["m1"]
    assert store.read_pointer(f"{prefix}/CURRENT") == "m1"
    assert everything(store, prefix) == ["CURRENT", "m1", "m1/result.json"]


def test_publish_fsyncs_every_file_and_folder_of_the_version(
    local: LocalArtifacts, fsynced: set[Ident]
) -> None:
    store = local
    key = publish_version(
        store, "crm/acme", "v1", {"customers.parquet": b"c", "models/0/xgb.json": b"m"}
    )
    v = store.local_path(key)
    expected = [v / "customers.parquet", v / "models/0/xgb.json", v / "models/0", v / "models"]
    assert {ident(p) for p in [*expected, v, v.parent]} <= fsynced


def test_a_published_name_is_never_reused(store: ArtifactStore) -> None:
    publish_version(store, "crm/acme", "v1", {"manifest.json": b"first"})
    staged = store.stage("crm/acme", "v1")
    (staged.path / "manifest.json").write_bytes(b"second")
    with pytest.raises(ArtifactExists):
        store.publish(staged)
    assert store.read_bytes("crm/acme/v1/manifest.json") == b"first"
    store.discard(staged)
    assert everything(store, "crm/acme") == ["v1", "v1/manifest.json"]


def test_crash_leftovers_are_hidden_then_cleaned(local: LocalArtifacts) -> None:
    store = local
    publish_version(store, "crm/acme", "v1", {"manifest.json": b"{}"})
    store.stage("crm/acme", "v2")  # a crashed import: staged, never published nor discarded
    (store.root / "crm/acme/.manifest.json.1234.tmp").write_bytes(b"half")
    (store.root / "crm/acme/.v0.abcd.deleting").mkdir()  # a crash while deleting v0
    assert store.versions("crm/acme") == ["v1"] and store.list_names("crm/acme") == ["v1"]
    removed = store.clean_staging("crm/acme")
    assert removed == [".manifest.json.1234.tmp", ".v0.abcd.deleting", ".v2.staging"]
    assert on_disk(store.root / "crm/acme") == ["v1", "v1/manifest.json"]


def test_a_deleted_version_disappears_at_once(store: ArtifactStore) -> None:
    publish_version(store, "p", "a", {"x": b"1", "sub/y": b"2"})
    store.delete("p/a")
    store.delete("p/a")  # nothing there is fine
    assert store.versions("p") == [] and everything(store, "p") == []


def test_pointer_round_trip(store: ArtifactStore) -> None:
    assert store.read_pointer("artifacts/segments/CURRENT") is None
    store.set_pointer("artifacts/segments/CURRENT", "s20240101T000000-abcd1234")
    assert store.read_pointer("artifacts/segments/CURRENT") == "s20240101T000000-abcd1234"
    with pytest.raises(InvalidKey):
        store.set_pointer("artifacts/segments/CURRENT", "../elsewhere")
    store.write_bytes("artifacts/segments/CURRENT", b"../../etc\n")  # garbled by hand
    assert store.read_pointer("artifacts/segments/CURRENT") is None


@pytest.mark.parametrize("keep", [0, 1, 3, 7])
def test_prune_keeps_the_newest_n_and_every_protected_one(store: ArtifactStore, keep: int) -> None:
    names = [f"v{i}" for i in range(1, 7)]
    for name in names:
        publish_version(store, "crm/acme", name, {"manifest.json": name.encode()})
    store.write_bytes("crm/acme/notes.txt", b"a file is not a version")
    deleted = store.prune("crm/acme", keep, protect={"v2"}, order=lambda n: int(n[1:]))
    kept = names[max(0, len(names) - keep) :]
    assert store.versions("crm/acme") == sorted({*kept, "v2"})
    assert sorted(deleted) == sorted(set(names) - {*kept, "v2"})
    assert store.exists("crm/acme/notes.txt")


def test_prune_orders_by_name_by_default(store: ArtifactStore) -> None:
    for name in ("d20240103", "d20240101", "d20240102"):
        publish_version(store, "artifacts/demographics", name, {"meta.json": b"{}"})
    assert store.prune("artifacts/demographics", 1) == ["d20240101", "d20240102"]


# -- a migrated caller: demographics' and segments' publish -------------------------------


def _build(version: str, fail: bool = False):
    def build(folder: Path) -> str:
        np.save(folder / "values.npy", np.arange(3.0))
        if fail:
            raise MemoryError("killed while building")
        (folder / "meta.json").write_text("{}")
        return version

    return build


def test_demographics_publish_keeps_the_previous_version_current_on_a_crash(
    local: LocalArtifacts, fsynced: set[Ident]
) -> None:
    store = local
    prefix = "artifacts/demographics"
    assert publish_to(store, prefix, _build("d1")) == "d1"
    values = store.local_path(f"{prefix}/d1/values.npy")
    assert ident(values) in fsynced  # np.save never fsyncs: publish does, like everywhere
    with pytest.raises(MemoryError):
        publish_to(store, prefix, _build("d2", fail=True))
    assert store.read_pointer(f"{prefix}/CURRENT") == "d1"
    assert on_disk(store.local_path(prefix)) == ["CURRENT", "d1", "d1/meta.json", "d1/values.npy"]
    for i in range(2, 9):
        publish_to(store, prefix, _build(f"d{i}"), keep=3)
    assert store.versions(prefix) == ["d6", "d7", "d8"]
    assert store.read_pointer(f"{prefix}/CURRENT") == "d8"


# -- the calls the archive and partitioned readers use -------------------------------------


def test_move_size_files_and_sub_stores(store: ArtifactStore) -> None:
    store.write_bytes("events/acme/_staging/b1/date=2024-01-01/1-0_2-0.parquet", b"rows")
    store.write_bytes("events/acme/_staging/b1/_quarantine/1-0_2-0.jsonl", b"bad\n")
    events = store.sub("events")
    assert events.files("acme/_staging/b1") == [
        "_quarantine/1-0_2-0.jsonl",
        "date=2024-01-01/1-0_2-0.parquet",
    ]
    events.move(
        "acme/_staging/b1/date=2024-01-01/1-0_2-0.parquet", "acme/date=2024-01-01/1-0_2-0.parquet"
    )
    assert store.read_bytes("events/acme/date=2024-01-01/1-0_2-0.parquet") == b"rows"
    assert not events.exists("acme/_staging/b1/date=2024-01-01/1-0_2-0.parquet")
    assert events.size("acme/date=2024-01-01/1-0_2-0.parquet") == 4
    assert events.versions("acme") == ["_staging", "date=2024-01-01"]
    with pytest.raises(ArtifactNotFound):
        events.move("acme/nothing", "acme/else")
    with pytest.raises(ArtifactNotFound):
        events.size("acme/nothing")
    fs, path = events.dataset_location("acme/date=2024-01-01/1-0_2-0.parquet")
    with fs.open_input_stream(path) as fh:
        assert fh.read() == b"rows"


def test_local_path_is_a_fresh_copy_of_what_the_key_holds(store: ArtifactStore) -> None:
    publish_version(store, "artifacts/models/acme", "m1", {"result.json": b"1", "m/0.json": b"a"})
    folder = store.local_path("artifacts/models/acme/m1")
    assert (folder / "result.json").read_bytes() == b"1" and (folder / "m/0.json").is_file()
    store.write_bytes("artifacts/models/acme/m1/score_cuts.json", b"[]")  # added after publish
    store.write_bytes("artifacts/models/acme/m1/result.json", b"22")  # replaced
    folder = store.local_path("artifacts/models/acme/m1")
    assert (folder / "score_cuts.json").read_bytes() == b"[]"
    assert (folder / "result.json").read_bytes() == b"22"
    store.delete("artifacts/models/acme/m1")
    assert not store.local_path("artifacts/models/acme/m1").exists()


def test_an_interrupted_upload_is_never_listed_and_is_cleaned(
    s3: S3Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object store's publish: files uploaded under the marker, the marker deleted last."""
    publish_version(s3, "crm/acme", "v1", {"manifest.json": b"{}"})
    real = s3._upload
    calls = []

    def dies_on_second(local: Path, key: str) -> None:
        calls.append(key)
        if len(calls) == 2:
            raise ConnectionError("killed mid-upload")
        real(local, key)

    monkeypatch.setattr(s3, "_upload", dies_on_second)
    with pytest.raises(ConnectionError):
        publish_version(s3, "crm/acme", "v2", {"a.parquet": b"a", "manifest.json": b"{}"})
    monkeypatch.setattr(s3, "_upload", real)
    assert s3.versions("crm/acme") == ["v1"] and s3.list_names("crm/acme") == ["v1"]
    assert not s3.exists("crm/acme/v2")
    assert s3.clean_staging("crm/acme") == [".v2.publishing"]
    assert everything(s3, "crm/acme") == ["v1", "v1/manifest.json"]
    assert publish_version(s3, "crm/acme", "v2", {"manifest.json": b"{}"}) == "crm/acme/v2"


def test_settings_choose_the_object_store(tmp_path: Path, s3_url: str, s3_server: str) -> None:
    s = Settings(data_dir=tmp_path / "var", storage_url=s3_url, s3_endpoint_url=s3_server)
    store = artifacts_for(s)
    assert isinstance(store, S3Artifacts) and store.url == s3_url
    assert artifacts_for(s) is store  # one client per process
    store.write_bytes("crm/acme/CURRENT", b"v1\n")
    assert artifacts_for(s).read_pointer("crm/acme/CURRENT") == "v1"
    assert isinstance(artifacts_for(Settings(data_dir=tmp_path)), LocalArtifacts)
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        artifacts_for(Settings(data_dir=tmp_path, storage_url="gs://elsewhere"))


def test_the_environment_names_the_storage(tmp_path: Path) -> None:
    from app.settings import load_settings

    s = load_settings({
        "OFFERWISE_DATA_DIR": str(tmp_path),
        "OFFERWISE_STORAGE_URL": "s3://bucket/prefix",
        "OFFERWISE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
    })  # fmt: skip
    assert (s.storage_url, s.s3_endpoint_url, s.s3_region) == (
        "s3://bucket/prefix", "http://127.0.0.1:9000", "eu-west-1",
    )  # fmt: skip
