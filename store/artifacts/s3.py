"""The artifact store on an S3-compatible object store (``s3://bucket/prefix``), through pyarrow's
``S3FileSystem`` (the AWS SDK for C++ that pyarrow ships: no other client to install).

An object store has no rename and no directories, so the promises of ``base.py`` are kept
another way:

- a file write is one PUT (a multipart upload above pyarrow's part size, completed in one call):
  the object appears whole or not at all, so a reader sees the old content or the new;
- a version is staged in a local folder, then published by uploading its files under
  ``<prefix>/<version>/`` while a hidden sibling object ``<prefix>/.<version>.publishing`` says
  the upload is in flight; deleting that marker, last, is the commit. Listings (``list_names``,
  ``versions``, ``exists`` of the folder) hide a folder that has such a sibling, and a crash
  leaves the marker, which ``clean_staging`` finds and removes with the partial upload;
- deleting a folder first writes ``<prefix>/.<name>.deleting``, which hides it at once, then
  removes its objects and finally the marker;
- a pointer (``CURRENT``) is one small object written after the version it names: readers follow
  pointers or ``versions()``, so they never reach a version that is not whole.

Durability is the object store's: a PUT that returned is stored. Credentials come from the AWS
SDK's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_PROFILE`` and the shared config files, or an instance role); ``endpoint_url`` points at an
S3-compatible server (MinIO, Ceph, moto) instead of AWS.

Readers that need a real file (memory-mapped numpy, XGBoost's model loader, pyarrow datasets)
call ``local_path``: it mirrors the key (a file or a whole version folder) into a local cache
folder, downloading only what changed since the last call (size and modification time), and
returns the cached path. Published versions never change, so after the first call a version
costs one LIST per ``local_path``. The cache is read-only from the store's view: a write into
it never reaches the bucket (write through ``write_file``/``write_bytes``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from store.artifacts.base import (
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    Staged,
    check_key,
    check_name,
    join_key,
)

PUBLISHING_SUFFIX = ".publishing"
DELETING_SUFFIX = ".deleting"
_MARKERS = (PUBLISHING_SUFFIX, DELETING_SUFFIX)


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; ValueError saying the expected form."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(
            f"storage URL {url!r} is not of the form s3://bucket/prefix "
            "(OFFERWISE_STORAGE_URL; leave it unset for the local data dir)"
        )
    prefix = parsed.path.strip("/")
    if prefix:
        check_key(prefix)
    return parsed.netloc, prefix


def make_s3_filesystem(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """pyarrow's S3 file system, on AWS or on an S3-compatible server at ``endpoint_url``."""
    from pyarrow import fs as pafs

    kwargs: dict[str, Any] = {}
    if region:
        kwargs["region"] = region
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"S3 endpoint {endpoint_url!r} must be http(s)://host[:port] "
                "(OFFERWISE_S3_ENDPOINT_URL)"
            )
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
        # S3-compatible servers are addressed by path (http://host/bucket/key), not by a
        # bucket subdomain that a local server cannot resolve.
        kwargs["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**kwargs)


class S3Artifacts(ArtifactStore):
    """Files under ``s3://bucket/prefix``; see the module docstring for how the promises hold."""

    def __init__(
        self,
        url: str,
        cache_dir: Path | str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        filesystem: Any = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.cache_dir = Path(cache_dir)
        self.endpoint_url = endpoint_url
        self.region = region
        self.fs = filesystem if filesystem is not None else make_s3_filesystem(endpoint_url, region)

    def __repr__(self) -> str:
        return f"S3Artifacts({self.url!r})"

    def sub(self, prefix: str) -> S3Artifacts:
        prefix = check_key(prefix, root_ok=True)
        if not prefix:
            return self
        url = f"s3://{self.bucket}/{join_key(self.prefix, prefix)}"
        return S3Artifacts(
            url,
            self.cache_dir / prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            filesystem=self.fs,
        )

    # -- addressing ----------------------------------------------------------------------
    def _p(self, key: str, root_ok: bool = False) -> str:
        """The file system path (``bucket/prefix/key``) of a checked key."""
        key = check_key(key, root_ok=root_ok)
        return "/".join(p for p in (self.bucket, self.prefix, key) if p)

    def dataset_location(self, key: str) -> tuple[Any, str]:
        return self.fs, self._p(key, root_ok=True)

    def _marker(self, folder_key: str, suffix: str) -> str:
        """File system path of the hidden marker object beside the folder ``folder_key``."""
        parent, _, name = folder_key.rpartition("/")
        return f"{self._p(parent, root_ok=True)}/.{name}{suffix}"

    def _put(self, path: str, data: bytes) -> None:
        with self.fs.open_output_stream(path) as out:
            out.write(data)

    def _info(self, key: str, root_ok: bool = False) -> Any:
        return self.fs.get_file_info(self._p(key, root_ok))

    def _listing(self, prefix: str, recursive: bool = False) -> list[Any]:
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(
            self._p(prefix, root_ok=True), recursive=recursive, allow_not_found=True
        )
        return list(self.fs.get_file_info(selector))

    def _hidden(self, entries: list[Any]) -> set[str]:
        """Names of folders among ``entries`` that a publish or delete marker hides."""
        return {name for e in entries if (name := _marked(e.base_name)) is not None}

    def _in_flight(self, key: str) -> bool:
        """Whether the folder ``key`` is being published or deleted (a marker beside it)."""
        return any(
            self.fs.get_file_info(self._marker(key, suffix)).type.name == "File"
            for suffix in _MARKERS
        )

    # -- reading -------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._p(key)) as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            raise ArtifactNotFound(errno.ENOENT, "no artifact", key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            return self.fs.open_input_file(self._p(key))  # random access: Parquet footers
        except FileNotFoundError:
            raise ArtifactNotFound(errno.ENOENT, "no artifact", key) from None

    def exists(self, key: str) -> bool:
        kind = self._info(key).type.name
        if kind == "File":
            return True
        if kind != "Directory":
            return False
        return not self._in_flight(key)

    def size(self, key: str) -> int:
        info = self._info(key)
        if info.type.name != "File":
            raise ArtifactNotFound(errno.ENOENT, "no artifact", key)
        return int(info.size)

    def list_names(self, prefix: str = "") -> list[str]:
        entries = self._listing(prefix)
        hidden = self._hidden(entries)
        return sorted(
            e.base_name
            for e in entries
            if not e.base_name.startswith(".") and e.base_name not in hidden
        )

    def versions(self, prefix: str) -> list[str]:
        entries = self._listing(prefix)
        hidden = self._hidden(entries)
        return sorted(
            e.base_name
            for e in entries
            if e.type.name == "Directory"
            and not e.base_name.startswith(".")
            and e.base_name not in hidden
        )

    def files(self, prefix: str = "") -> list[str]:
        base = self._p(prefix, root_ok=True)
        out = []
        for e in self._listing(prefix, recursive=True):
            if e.type.name != "File":
                continue
            rel = e.path[len(base) + 1 :]
            if not any(part.startswith(".") for part in rel.split("/")):
                out.append(rel)
        return sorted(out)

    def local_path(self, key: str) -> Path:
        """A local mirror of ``key`` (file or folder), refreshed from the bucket: see the
        module docstring. A key with nothing behind it gives a path that does not exist."""
        key = check_key(key, root_ok=True)
        dest = self.cache_dir / key if key else self.cache_dir
        info = self._info(key, root_ok=True) if key else None
        if info is not None and info.type.name == "File":
            self._fetch(info, dest)
            return dest
        remote = {}
        if info is None or info.type.name == "Directory":
            base = self._p(key, root_ok=True)
            for e in self._listing(key, recursive=True):
                rel = e.path[len(base) + 1 :]
                if e.type.name == "File" and not _hidden_segment(rel):
                    remote[rel] = e
        if not remote:
            if dest.is_dir():
                shutil.rmtree(dest, ignore_errors=True)
            elif dest.exists():
                dest.unlink(missing_ok=True)
            return dest
        if dest.exists() and not dest.is_dir():
            dest.unlink()
        for rel, e in remote.items():
            self._fetch(e, dest / rel)
        # Drop what the bucket no longer has (a pruned version, a rewritten archive file); local
        # hidden names (downloads in flight, staging, spools) are not the mirror's.
        for path in sorted(dest.rglob("*"), reverse=True):
            rel = str(path.relative_to(dest))
            if _hidden_segment(rel):
                continue
            if path.is_file() and rel not in remote:
                path.unlink(missing_ok=True)
            elif path.is_dir() and not any(path.iterdir()):
                with contextlib.suppress(OSError):
                    path.rmdir()
        return dest

    def _fetch(self, info: Any, dest: Path) -> None:
        """Download one object to ``dest`` unless the cached copy has its size and mtime."""
        mtime_ns = int(info.mtime_ns) if info.mtime_ns is not None else 0
        with contextlib.suppress(FileNotFoundError):
            st = dest.stat()
            if st.st_size == info.size and st.st_mtime_ns == mtime_ns:
                return
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".cache-{dest.name}.{secrets.token_hex(4)}")
        try:
            with self.fs.open_input_stream(info.path) as src, open(tmp, "wb") as out:
                while chunk := src.read(8 << 20):
                    out.write(chunk)
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
            os.replace(tmp, dest)  # concurrent readers of the cache see whole files only
        finally:
            tmp.unlink(missing_ok=True)

    # -- writing -------------------------------------------------------------------------
    def _upload(self, local: Path, key: str) -> None:
        with open(local, "rb") as src, self.fs.open_output_stream(self._p(key)) as out:
            while chunk := src.read(8 << 20):
                out.write(chunk)

    def write_file(self, key: str, write: Callable[[Path], object]) -> None:
        check_key(key)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".write-") as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            write(path)
            self._upload(path, key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._put(self._p(key), data)

    def move(self, src: str, dst: str) -> None:
        """Server-side copy, then delete: the destination appears whole (one copy call)."""
        try:
            self.fs.copy_file(self._p(src), self._p(dst))
        except OSError:
            if self._info(src).type.name != "File":  # the S3 error is a plain OSError
                raise ArtifactNotFound(errno.ENOENT, "no artifact", src) from None
            raise
        self.fs.delete_file(self._p(src))

    def delete(self, key: str) -> None:
        kind = self._info(key).type.name
        if kind == "File":
            self.fs.delete_file(self._p(key))
            return
        if kind != "Directory":
            return
        marker = self._marker(key, DELETING_SUFFIX)
        self._put(marker, b"")  # hides the folder at once
        self.fs.delete_dir(self._p(key))
        self.fs.delete_file(marker)

    # -- versioned folders ----------------------------------------------------------------
    def stage(self, prefix: str, name: str | None = None) -> Staged:
        check_key(prefix, root_ok=True)
        label = check_name(name) if name is not None else secrets.token_hex(8)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=f".stage-{label}-"))
        return Staged(prefix, name, folder)

    def publish(self, staged: Staged, version: str | None = None) -> str:
        version = version if version is not None else staged.name
        if version is None:
            raise ValueError("publish needs a version name: none was given to stage() either")
        key = join_key(staged.prefix, check_name(version))
        if self._info(key).type.name != "NotFound":
            raise ArtifactExists(errno.EEXIST, "version already published", key)
        marker = self._marker(key, PUBLISHING_SUFFIX)
        self._put(marker, b"")
        for path in sorted(staged.path.rglob("*")):
            if path.is_file():
                self._upload(path, join_key(key, str(path.relative_to(staged.path))))
        self.fs.delete_file(marker)  # the commit: the version is visible from here
        return key

    def discard(self, staged: Staged) -> None:
        shutil.rmtree(staged.path, ignore_errors=True)

    def clean_staging(self, prefix: str) -> list[str]:
        """Removes the partial uploads and deletions of crashed writers directly under
        ``prefix``, with their markers, and local staging folders of this host."""
        removed: list[str] = []
        for e in self._listing(prefix):
            name = e.base_name
            folder = _marked(name)
            if folder is None:
                continue
            target = join_key(prefix, folder)
            if self._info(target).type.name == "Directory":
                self.fs.delete_dir(self._p(target))
            self.fs.delete_file(e.path)
            removed.append(name)
        return sorted(removed)

    @contextlib.contextmanager
    def lock(
        self,
        key: str,
        exclusive: bool,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """No lock: an object store has no flock. Writers of a prefix are serialised by the
        caller (the archive's writers all hold the tenant's archiver lock in Redis), and readers
        retry a file that vanished under them (see ``clickstream.archive_files``)."""
        check_key(key, root_ok=True)
        yield


def _hidden_segment(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _marked(name: str) -> str | None:
    """The folder a marker object's name (``.<folder>.publishing``/``.deleting``) hides."""
    if name.startswith("."):
        for suffix in _MARKERS:
            if name.endswith(suffix) and len(name) > len(suffix) + 1:
                return name[1 : -len(suffix)]
    return None
