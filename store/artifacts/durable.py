"""Durable file primitives on a local file system: the one way Offerwise makes a write survive.

A write is durable only when the file's data *and* the directory entry naming it are on disk:
``os.replace`` alone can leave, after a power cut, an empty file or the old name. So every file
is written under a temp name, fsynced, renamed over its final name, and the directory is
fsynced; a folder created on the way has its own parent fsynced too. A crash leaves at worst a
temp file (``.<name>.<random>.tmp``), which is garbage and never read.

These work on ``Path``s: ``LocalArtifacts`` is built on them, and so is code whose own
crash-safety protocol is about local renames (the event archive's staging and promotion) or
whose file lies outside any store (a batch-scoring output the user names).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (created, renamed, removed names) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (itself included), deepest first.

    Writers into a staging folder (pyarrow, numpy) do not fsync; this is what makes the folder
    whole on disk before a rename publishes it.
    """
    for dirpath, _dirnames, filenames in os.walk(folder, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            fsync_file(here / name)
        fsync_dir(here)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new folders survive a crash (each new folder's parent is fsynced)."""
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
            d.mkdir()
        fsync_dir(d.parent)


def temp_path(final: Path) -> Path:
    """Hidden name beside ``final`` for a file being written; readers and listings skip it."""
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temp path to write ``final``'s new content to; when the block ends without an error
    the temp file is fsynced, renamed over ``final`` and the directory fsynced.

    A reader sees the old file or the new one, never part of one; if the block raises, the temp
    file is removed and ``final`` is untouched. Files the block opened must be closed by then.
    """
    make_dirs(final.parent)
    tmp = temp_path(final)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def atomic_write(final: Path, write: Callable[[Path], object]) -> None:
    """``write(temp)`` under ``atomic_path(final)``."""
    with atomic_path(final) as tmp:
        write(tmp)
