"""Aggregate event counters per tenant and UTC day (kept even for DNT/GPC visitors)."""

from __future__ import annotations

import time

import redis

from clickstream.ingest import stats_key


def daily_counts(
    r: redis.Redis, tenant: str, days: int = 7, now: float | None = None
) -> list[dict]:
    now = time.time() if now is None else now
    dates = [time.strftime("%Y-%m-%d", time.gmtime(now - d * 86400)) for d in range(days)]
    pipe = r.pipeline(transaction=False)
    for day in dates:
        pipe.hgetall(stats_key(tenant, day))
    out = []
    for day, raw in zip(dates, pipe.execute(), strict=True):
        counts = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        out.append({"date": day, "events": sum(counts.values()), "by_type": counts})
    return out
