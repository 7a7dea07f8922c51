"""The one feature vector shared by training, batch scoring and real-time serving.

Two steps, so that no feature is ever computed by two different pieces of code:

1. **Raw columns**: what is known about each row (a CRM customer or a live visitor), under fixed
   names, as arrays of equal length (numpy, pyarrow or plain lists):

   - ``has_crm``, ``has_zip``, ``has_web``: 1 where the group is known for the row, else 0;
   - ``crm.<attribute>``: numeric and boolean attributes as numbers, dates as days since
     1970-01-01, categorical attributes as text (None when missing);
   - ``hold.<product>``: quantity of the product the customer holds (0 when none);
   - ``zip.<key>``: the ZIP block's numbers (``demo_*`` figures, ``latitude``, ``longitude``,
     ``segment_id``), made by ``zip_raw`` from a ``zip_profile`` block;
   - ``web.*``: the visitor-profile aggregates (``web.n_<event type>``, ``web.first_seen`` and
     ``web.last_seen`` in epoch seconds, ``web.recent_count``, ``web.cart_count``,
     ``web.bought_count``, ``web.aff.<category>`` shares, ``web.viewed.<product>`` 0/1).

   ``FeatureBuilder.row_from_live`` makes them for one visitor (serving);
   ``FeatureBuilder.columns_from_crm`` for a CRM extract (training, batch scoring), with the
   ZIP group from ``ZipLookup`` (the same ``zip_raw`` per distinct ZIP) and the web group from
   ``models.web_history`` (archived events aggregated the way the live profile aggregates them).

2. **Transform**: ``FeatureBuilder.transform(columns, as_of)`` turns raw columns into the float32
   matrix in ``FeatureSchema.feature_names`` order. It is vectorized over rows and processes big
   inputs in chunks (bounded memory), and it is the only code that does so: one row at serving
   time goes through exactly the same operations as a million at training time.

Missing groups are explicit: every feature of a group a row lacks is NaN (an anonymous visitor
has NaN for all CRM and holdings features and ``has_crm = 0``), never a zero that would read as
"holds nothing" or "is 0 years old". XGBoost learns a default direction for NaN; the logistic
regression baseline imputes (and can read the ``has_*`` flags).

The package's modules: ``schema`` (what the vector holds), ``values`` (one raw value as a number,
a day count or text), ``groups`` (the ZIP and web groups of one row), ``builder`` (the
transform), ``crm`` (a CRM extract's draft schema and raw columns).
"""

from models.features.builder import FeatureBuilder
from models.features.crm import columns_from_crm, draft_schema, holdings_matrix
from models.features.groups import ZipLookup, web_raw_from_profile, zip_block_for, zip_raw
from models.features.schema import (
    DAYS_SINCE,
    FLAGS,
    FORMAT,
    FORMAT_VERSION,
    GEO_KEYS,
    GROUPS,
    IDENTITY,
    INDICATOR,
    LOG1P,
    MAX_CATEGORIES,
    MAX_LEVELS,
    MAX_SEGMENTS,
    MIN_LEVEL_COUNT,
    MIN_LEVEL_SHARE,
    OTHER,
    WEB_COUNTERS,
    WEB_SIZES,
    YEARS_SINCE,
    FeatureError,
    FeatureSchema,
)

# The transform's tunables (CHUNK_ROWS, ...) stay in models.features.builder and are not
# re-exported: a copy here would let a test patch this name and silently change nothing.
__all__ = [
    "DAYS_SINCE",
    "FLAGS",
    "FORMAT",
    "FORMAT_VERSION",
    "GEO_KEYS",
    "GROUPS",
    "IDENTITY",
    "INDICATOR",
    "LOG1P",
    "MAX_CATEGORIES",
    "MAX_LEVELS",
    "MAX_SEGMENTS",
    "MIN_LEVEL_COUNT",
    "MIN_LEVEL_SHARE",
    "OTHER",
    "WEB_COUNTERS",
    "WEB_SIZES",
    "YEARS_SINCE",
    "FeatureBuilder",
    "FeatureError",
    "FeatureSchema",
    "ZipLookup",
    "columns_from_crm",
    "draft_schema",
    "holdings_matrix",
    "web_raw_from_profile",
    "zip_block_for",
    "zip_raw",
]
