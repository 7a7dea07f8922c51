"""Load a registered version's serving artifacts: feature schema and flattened scorer (and the
small score cuts and drift reference).

Only these files are read, so serving needs neither XGBoost nor scikit-learn in memory and
a switch costs milliseconds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from models.drift import LiveSample, Reference
from models.fast_scorer import MultiProductScorer
from models.features import FeatureBuilder, FeatureSchema
from models.registry import version_dir
from models.serving import Bundle
from store.config import Settings

log = logging.getLogger("offerwise.serving")
SCHEMA_FILE = "schema.json"
SCORER_FILE = "scorer.npz"
ANONYMOUS_DIR = "anonymous"  # the anonymous visitors' model of a version (models.anonymous)
SCORE_CUTS_FILE = "score_cuts.json"  # written by models.pipeline (absent in older versions)


def load_bundle(settings: Settings, tenant: str, version: str) -> Bundle:
    folder = version_dir(settings, tenant, version)
    bundle = _load(folder, tenant, version, drift=True)
    anon = folder / ANONYMOUS_DIR
    if (anon / SCORER_FILE).is_file():
        # The anonymous visitors' model of the same version (models.anonymous).
        bundle = replace(bundle, anonymous=_load(anon, tenant, version, drift=False))
    return bundle


def _load(folder: Path, tenant: str, version: str, *, drift: bool) -> Bundle:
    schema = FeatureSchema.from_json((folder / SCHEMA_FILE).read_bytes())
    scorer = MultiProductScorer.load(folder / SCORER_FILE)
    builder = FeatureBuilder(schema)
    if list(scorer.feature_names) != list(builder.feature_names):
        raise ValueError(f"{folder}: scorer and feature schema disagree on the features")
    cuts_file = folder / SCORE_CUTS_FILE
    cuts = json.loads(cuts_file.read_text()) if cuts_file.is_file() else {}
    reference = Reference.load(folder) if drift else None
    if reference is not None and reference.features != list(builder.feature_names):
        # Drift is measured, not served: a bad reference costs the measurement only.
        log.warning("%s: drift reference and feature schema disagree; no drift sample", folder)
        reference = None
    live = LiveSample(tenant, version, reference) if reference is not None else None
    return Bundle(version=version, builder=builder, scorer=scorer, score_cuts=cuts, live=live)
