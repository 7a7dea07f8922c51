"""Where the benchmarks find the shared public data (README "Data")."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``OFFERWISE_SHARED_DATA``, else ``../shared/data`` beside the checkout; exits if absent."""
    default = ROOT / ".." / "shared" / "data"
    path = Path(os.environ.get("OFFERWISE_SHARED_DATA", default)).resolve()
    if not (path / "zcta_demographics.csv").is_file():
        sys.exit(f"shared data not found at {path}; set OFFERWISE_SHARED_DATA")
    return path


def writable_geonames(shared: Path, work: Path) -> Path:
    """A copy of the shared GeoNames folder under ``work/geo`` that pgeocode may write its
    cache beside (the shared files can be read-only); returns the folder."""
    geo_dir = work / "geo"
    shutil.copytree(shared / "geonames", geo_dir)
    for f in geo_dir.iterdir():
        f.chmod(0o644)
    return geo_dir
