"""One home for files: atomic writes, versioned folders, pointers and pruning behind one interface.

Domain code asks ``artifacts_for(settings)`` for the store and addresses files by relative keys
(``crm/acme/v3/customers.parquet``); it never learns whether they sit on a local disk or, later,
in an object store (issue 15). Only code that needs a real path (memory-mapped numpy, pyarrow
datasets) calls ``local_path``, which is local-only. ``durable`` holds the ``Path``-level
primitives the local store is built on, for the few protocols that are about local renames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.artifacts.base import (
    ArtifactExists,
    ArtifactNotFound,
    ArtifactStore,
    InvalidKey,
    NoLocalPath,
    Staged,
    check_key,
    check_name,
    join_key,
)
from store.artifacts.durable import (
    atomic_path,
    atomic_write,
    fsync_dir,
    fsync_file,
    fsync_tree,
    make_dirs,
)
from store.artifacts.local import LocalArtifacts

if TYPE_CHECKING:
    from store.config import Settings

__all__ = [
    "ARTIFACTS",
    "CRM",
    "EVENTS",
    "ArtifactExists",
    "ArtifactNotFound",
    "ArtifactStore",
    "InvalidKey",
    "LocalArtifacts",
    "NoLocalPath",
    "Staged",
    "artifacts_for",
    "atomic_path",
    "atomic_write",
    "check_key",
    "check_name",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "join_key",
    "make_dirs",
]

# Top-level prefixes of the data dir, the keyed twins of Settings.events_dir, crm_dir and
# artifacts_dir (a test holds them together).
EVENTS = "events"
CRM = "crm"
ARTIFACTS = "artifacts"


def artifacts_for(settings: Settings) -> ArtifactStore:
    """The store of these settings, rooted at the data dir.

    The one place that chooses the implementation: an object store plugs in here once
    ``Settings`` carries its URL.
    """
    return LocalArtifacts(settings.data_dir)
