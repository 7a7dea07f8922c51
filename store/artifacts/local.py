"""The artifact store on a local (or shared POSIX) file system.

One durability level for everything: a file is written by temp file + fsync + rename + fsync
of the directory; a version folder is staged as a hidden sibling (``.<name>.staging``), every
file and folder in it fsynced, renamed into place (a rename within one directory is atomic)
and the parent fsynced. A folder is deleted by first renaming it to a hidden name, so a crash
in the middle of removing it never leaves a half-empty version that looks published.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from store.artifacts.base import (
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    Staged,
    check_key,
    check_name,
    join_key,
)
from store.artifacts.durable import atomic_write, fsync_dir, fsync_tree, make_dirs

STAGING_SUFFIX = ".staging"
DELETING_SUFFIX = ".deleting"
TEMP_SUFFIX = ".tmp"
LOCK_FILE = ".lock"


class LocalArtifacts(ArtifactStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalArtifacts({str(self.root)!r})"

    def sub(self, prefix: str) -> LocalArtifacts:
        return LocalArtifacts(self._path(prefix, root_ok=True))

    def dataset_location(self, key: str) -> tuple[Any, str]:
        from pyarrow import fs as pafs

        return pafs.LocalFileSystem(), str(self._path(key, root_ok=True))

    def _path(self, key: str, root_ok: bool = False) -> Path:
        key = check_key(key, root_ok=root_ok)
        return self.root / key if key else self.root

    def local_path(self, key: str) -> Path:
        """Local only: the path of ``key`` (file or folder; ``""`` is the root), for readers
        that need a real file (pyarrow datasets, memory-mapped numpy)."""
        return self._path(key, root_ok=True)

    # -- reading -------------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as err:
            raise ArtifactNotFound(err.errno, "no artifact", key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as err:
            raise ArtifactNotFound(err.errno, "no artifact", key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def _children(self, prefix: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self._path(prefix, root_ok=True)) as it:
                return [e for e in it if not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def list_names(self, prefix: str = "") -> list[str]:
        return sorted(e.name for e in self._children(prefix))

    def versions(self, prefix: str) -> list[str]:
        return sorted(e.name for e in self._children(prefix) if e.is_dir())

    def files(self, prefix: str = "") -> list[str]:
        base = self._path(prefix, root_ok=True)
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            here = Path(dirpath).relative_to(base)
            out += [str(here / n) for n in filenames if not n.startswith(".")]
        return sorted(out)

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as err:
            raise ArtifactNotFound(err.errno, "no artifact", key) from None

    # -- writing -------------------------------------------------------------------------
    def write_file(self, key: str, write: Callable[[Path], object]) -> None:
        atomic_write(self._path(key), write)

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        make_dirs(target.parent)
        try:
            os.replace(source, target)
        except FileNotFoundError as err:
            raise ArtifactNotFound(err.errno, "no artifact", src) from None
        fsync_dir(target.parent)
        if source.parent != target.parent:
            fsync_dir(source.parent)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir() and not path.is_symlink():
            doomed = path.with_name(f".{path.name}.{secrets.token_hex(4)}{DELETING_SUFFIX}")
            try:
                os.rename(path, doomed)
            except FileNotFoundError:
                return
            fsync_dir(path.parent)
            shutil.rmtree(doomed, ignore_errors=True)
            return
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    # -- versioned folders ----------------------------------------------------------------
    def stage(self, prefix: str, name: str | None = None) -> Staged:
        base = self._path(prefix, root_ok=True)
        make_dirs(base)
        label = check_name(name) if name is not None else secrets.token_hex(8)
        folder = base / f".{label}{STAGING_SUFFIX}"
        folder.mkdir()  # an existing one is another writer's (or a crash's): never share it
        return Staged(prefix, name, folder)

    def publish(self, staged: Staged, version: str | None = None) -> str:
        version = version if version is not None else staged.name
        if version is None:
            raise ValueError("publish needs a version name: none was given to stage() either")
        key = join_key(staged.prefix, check_name(version))
        target = self._path(key)
        fsync_tree(staged.path)
        # A rename onto an empty folder would succeed silently; a published name is never reused.
        if target.exists():
            raise ArtifactExists(errno.EEXIST, "version already published", key)
        os.rename(staged.path, target)
        fsync_dir(target.parent)
        return key

    def discard(self, staged: Staged) -> None:
        shutil.rmtree(staged.path, ignore_errors=True)

    def clean_staging(self, prefix: str) -> list[str]:
        """Removes hidden staging folders, half-deleted folders and temp files directly under
        ``prefix``."""
        base = self._path(prefix, root_ok=True)
        removed: list[str] = []
        if not base.is_dir():
            return removed
        for child in sorted(base.iterdir()):
            name = child.name
            if not name.startswith("."):
                continue
            if child.is_dir() and name.endswith((STAGING_SUFFIX, DELETING_SUFFIX)):
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_file() and name.endswith(TEMP_SUFFIX):
                child.unlink(missing_ok=True)
            else:
                continue
            removed.append(name)
        return removed

    @contextlib.contextmanager
    def lock(
        self,
        key: str,
        exclusive: bool,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """flock on ``<key>/.lock``; serialises writers and readers on one host or a shared
        POSIX file system."""
        folder = self._path(key, root_ok=True)
        make_dirs(folder)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        with open(folder / LOCK_FILE, "a+b") as fh:
            deadline = None if timeout is None else time.monotonic() + timeout
            next_ping = time.monotonic() + 1.0
            while True:
                try:
                    fcntl.flock(fh, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        raise TimeoutError(f"{folder} is locked by another writer") from None
                    if on_wait is not None and now >= next_ping:
                        on_wait()
                        next_ping = now + 1.0
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
