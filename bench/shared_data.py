"""Where the benchmarks find the shared public data (README "Data")."""

from __future__ import annotations

import os
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
