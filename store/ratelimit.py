"""Per-tenant request rate limit: a one-second fixed window counter in Redis.

Shared by every worker and host, so the limit holds for the tenant as a whole. Callers fold the
counter into the round trip they make anyway (the ingest script, the recommend pipeline).
"""

from __future__ import annotations

from store import keys

WINDOW_S = 1


# Named in store.keys; kept here under the names callers import.
rate_key = keys.rate_window


class Refused(Exception):
    """A request refused as a whole before anything was stored (rate limit, backpressure)."""

    def __init__(self, reason: str, retry_after: int, status: int = 429) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status
