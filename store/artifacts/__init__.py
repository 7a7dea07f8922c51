"""One home for files: atomic writes, versioned folders, pointers and pruning behind one interface.

Domain code asks ``artifacts_for(settings)`` for the store and addresses files by relative keys
(``crm/acme/v3/customers.parquet``); it never learns whether they sit on a local disk
(``LocalArtifacts``) or in an S3-compatible object store (``s3.S3Artifacts``, chosen by
``Settings.storage_url``). Code that needs a real path (memory-mapped numpy, XGBoost's loader)
calls ``local_path``: the file itself locally, a refreshed local cached copy on an object store.
``durable`` holds the ``Path``-level primitives the local store is built on, for files outside
any store (a batch-scoring output the user names).
"""

from __future__ import annotations

import os
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
    "events_store",
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
    """The store of these settings: the data dir, or the object store at ``storage_url``.

    The one place that chooses the implementation. Stores are cheap to make, but an S3 one
    holds a client (connection pool, SDK threads): one per (URL, endpoint) and process is
    kept, and a forked process (a gunicorn worker) makes its own.
    """
    if not settings.storage_url:
        return LocalArtifacts(settings.data_dir)
    key = (
        os.getpid(),
        settings.storage_url,
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.cache_dir,
    )
    store = _OBJECT_STORES.get(key)
    if store is None:
        from store.artifacts.s3 import S3Artifacts

        store = S3Artifacts(
            settings.storage_url,
            settings.cache_dir / "objects",
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
        _OBJECT_STORES[key] = store
    return store


def events_store(settings: Settings) -> ArtifactStore:
    """The event archive's store (keys ``<tenant>/date=.../...``)."""
    return artifacts_for(settings).sub(EVENTS)


_OBJECT_STORES: dict[tuple, ArtifactStore] = {}
