"""How much one event of each type credits its product's popularity and its category's affinity.

The one table of the live store and of training: the ingest script is rendered from it
(``clickstream.ingest``) and the archive's affinities are rebuilt with it
(``models.web_history``), so live and offline affinities cannot drift apart. Event types not
listed credit nothing. Both read ``WEIGHTS`` through this module when they start (a script)
or run (a rebuild), so a test can change the table and see both follow.
"""

from __future__ import annotations

WEIGHTS: dict[str, int] = {"product_view": 1, "add_to_cart": 3, "purchase": 5, "offer_click": 2}
