"""The artifact store's interface: files addressed by relative POSIX keys, always written whole.

A key names a file or a folder relative to the store's root, like
``crm/acme/v3/customers.parquet``; never an absolute ``Path``, so that the object-store
implementation (``s3://bucket/prefix``: ``s3.py``) stands behind the same calls. The promises
every implementation keeps:

- a write is atomic and durable: a reader sees the old content or the new, never part of it,
  and once the call returns the new content survives a crash;
- a version folder is built in a staging area (``stage`` gives a local folder to fill) and
  appears under its name all at once (``publish``); until then no listing shows it, and a crash
  before ``publish`` leaves every published version and pointer as they were;
- a pointer (``CURRENT`` -> version name) is a small file written atomically like any other;
- names starting with ``.`` are the store's own (temp files, staging folders) and never listed.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class InvalidKey(ValueError):
    """A key that could escape the store or clash with its own files; the message says why."""


class ArtifactNotFound(FileNotFoundError):
    """No file under that key."""


class ArtifactExists(FileExistsError):
    """``publish`` found a version of that name already published."""


class NoLocalPath(RuntimeError):
    """The store keeps no local copy (an object store); read through ``read_bytes``/``open``."""


_EXAMPLE = "keys are relative, like 'crm/acme/v3/customers.parquet'"


def check_key(key: str, *, root_ok: bool = False) -> str:
    """``key`` if it is a safe relative POSIX key, else InvalidKey; ``""`` (the root) if allowed."""
    if not isinstance(key, str):
        raise InvalidKey(f"artifact key must be a string, got {type(key).__name__}; {_EXAMPLE}")
    if key == "":
        if root_ok:
            return key
        raise InvalidKey(f"artifact key is empty; {_EXAMPLE}")
    if key.startswith("/"):
        raise InvalidKey(f"artifact key {key!r} is absolute; {_EXAMPLE}")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidKey(
                f"artifact key {key!r} has an empty segment ('//' or a '/' at the end)"
            )
        if segment in (".", ".."):
            raise InvalidKey(f"artifact key {key!r} has a {segment!r} segment; {_EXAMPLE}")
        if segment.startswith("."):
            raise InvalidKey(
                f"artifact key {key!r}: {segment!r} starts with '.', which is reserved for the "
                "store's temp and staging files"
            )
        if "\\" in segment or "\x00" in segment:
            raise InvalidKey(f"artifact key {key!r} holds a backslash or NUL; {_EXAMPLE}")
    return key


def check_name(name: str) -> str:
    """A version or file name: one key segment."""
    if "/" in name:
        raise InvalidKey(f"{name!r} is not a single name (it holds '/')")
    return check_key(name)


def join_key(*parts: str) -> str:
    """Keys joined with '/', the root (``""``) skipped; the result is checked."""
    return check_key("/".join(p for p in parts if p))


@dataclass(frozen=True)
class Staged:
    """A version being built. ``path`` is a local folder in every implementation: fill it with
    any writer (pyarrow, numpy, open()), then ``publish`` it; the store makes it durable."""

    prefix: str
    name: str | None
    path: Path


class ArtifactStore(ABC):
    """Files and versioned folders under one root; see the module docstring for the promises."""

    # -- reading -------------------------------------------------------------------------
    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The file's content; ArtifactNotFound when there is none."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """The file opened for reading (binary); ArtifactNotFound when there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file or a folder (a published version, say) is there."""

    @abstractmethod
    def list_names(self, prefix: str = "") -> list[str]:
        """Names of the files and folders directly under ``prefix``, sorted; [] if none."""

    @abstractmethod
    def versions(self, prefix: str) -> list[str]:
        """Names of the published version folders directly under ``prefix``, sorted."""

    @abstractmethod
    def files(self, prefix: str = "") -> list[str]:
        """Keys (relative to ``prefix``) of every file under it, at any depth, sorted; hidden
        names and what lies under them skipped."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The file's size in bytes; ArtifactNotFound when there is none."""

    def local_path(self, key: str) -> Path:
        """A real path for readers that need one (memory-mapped numpy, XGBoost's loader). The
        local store gives the file itself; an object store a local cached copy of what the key
        holds now, refreshed on every call (read it, never write into it)."""
        raise NoLocalPath(f"{type(self).__name__} keeps no local copy of {key!r}")

    @abstractmethod
    def dataset_location(self, key: str) -> tuple[Any, str]:
        """(pyarrow file system, path) of ``key`` (``""`` is the root), for readers that take a
        file system, like ``dask.dataframe.read_parquet(..., filesystem=fs)``."""

    @abstractmethod
    def sub(self, prefix: str) -> ArtifactStore:
        """The same store rooted at ``prefix``: its keys are relative to that folder."""

    # -- writing -------------------------------------------------------------------------
    @abstractmethod
    def write_file(self, key: str, write: Callable[[Path], object]) -> None:
        """Atomic, durable write by ``write(local_temp_path)``, for writers that want a path
        (pyarrow, numpy). If ``write`` raises, the key keeps its old content."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Atomic, durable write of ``data``."""
        self.write_file(key, lambda path: path.write_bytes(data))

    @abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Give the file ``src`` the key ``dst`` (replacing it): ``dst`` appears whole, durably;
        ``src`` is gone afterwards. ArtifactNotFound when ``src`` is not there."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a file or a whole folder (it disappears at once); nothing there is fine."""

    # -- versioned folders ----------------------------------------------------------------
    @abstractmethod
    def stage(self, prefix: str, name: str | None = None) -> Staged:
        """A new, empty staging folder for a version under ``prefix``. ``name`` is the version
        it is meant to become, if already known (it also names the staging area)."""

    @abstractmethod
    def publish(self, staged: Staged, version: str | None = None) -> str:
        """Make the staged folder visible as ``<prefix>/<version>`` at once, durably; returns
        that key. ``version`` defaults to the name given to ``stage``. ArtifactExists if a
        version of that name is already published (the staged folder is kept)."""

    @abstractmethod
    def discard(self, staged: Staged) -> None:
        """Drop a staged folder that will not be published; no-op once published."""

    @abstractmethod
    def clean_staging(self, prefix: str) -> list[str]:
        """Remove staging and deletion leftovers of crashed writers under ``prefix`` (call only
        while no writer of that prefix runs); returns what was removed."""

    @abstractmethod
    def lock(
        self,
        key: str,
        exclusive: bool,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """A lock on the folder ``key``: shared for readers, exclusive for writers (flock in the
        local store; none in an object store, whose writers a caller serialises another way).
        ``on_wait`` runs about every second while waiting; raises TimeoutError after
        ``timeout`` seconds (None waits forever)."""

    @contextlib.contextmanager
    def staging(self, prefix: str, name: str | None = None) -> Iterator[Staged]:
        """``stage`` as a context: whatever was not published by the end is discarded, also
        when the block raises."""
        staged = self.stage(prefix, name)
        try:
            yield staged
        finally:
            self.discard(staged)

    def prune(
        self,
        prefix: str,
        keep: int,
        protect: Collection[str] = (),
        order: Callable[[str], Any] | None = None,
    ) -> list[str]:
        """Delete all but the ``keep`` newest versions under ``prefix``, never one in
        ``protect``; returns the names deleted. Versions are ordered by name (ids that sort by
        age), or by ``order(name)``."""
        names = self.versions(prefix)
        if order is not None:
            names.sort(key=order)
        deleted = []
        for name in names[: max(0, len(names) - keep)]:
            if name in protect:
                continue
            try:
                self.delete(join_key(prefix, name))
            except OSError as err:  # an old version left behind costs disk, not correctness
                log.warning("could not prune %s/%s: %s", prefix, name, err)
                continue
            deleted.append(name)
        return deleted

    # -- pointers ------------------------------------------------------------------------
    def set_pointer(self, key: str, version: str) -> None:
        """Point ``key`` (a small file, like ``.../CURRENT``) at a version name, atomically."""
        self.write_bytes(key, (check_name(version) + "\n").encode())

    def read_pointer(self, key: str) -> str | None:
        """The version name ``key`` points at; None when there is no readable pointer."""
        try:
            return check_name(self.read_bytes(key).decode().strip())
        except (OSError, UnicodeDecodeError, InvalidKey):  # empty or garbled: points nowhere
            return None
