"""Per-tenant request rate limit: a one-second fixed window counter in Redis.

Shared by every worker and host, so the limit holds for the tenant as a whole. Callers fold the
counter into the round trip they make anyway (the ingest script, the recommend pipeline).
"""

from __future__ import annotations

from store import keys

WINDOW_S = 1


def rate_key(tenant: str, now_s: float) -> str:
    return keys.tenant_key(tenant, "rl", str(int(now_s)))


class Refused(Exception):
    """A request refused as a whole before anything was stored (rate limit, backpressure)."""

    def __init__(self, reason: str, retry_after: int, status: int = 429) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status
