"""Aggregate event counters per tenant and UTC day (kept even for DNT/GPC visitors)."""

from __future__ import annotations

import time

import redis

from clickstream.ingest import DAY_S, stats_key
from store import keys


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


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def traffic_overview(
    r: redis.Redis, tenant: str, minutes: int = 60, days: int = 7, now: float | None = None
) -> dict:
    """What the dashboard's overview shows, from the counters the ingest script keeps: new
    events and offer impressions in each of the last ``minutes`` whole UTC minutes (oldest
    first, the current minute last), and for each of the last ``days`` UTC days (today first)
    the distinct tracked visitors, those identified, and the events per ZIP segment. Visitor
    counts are HyperLogLog estimates (about 1% off); one pipelined round trip."""
    now = time.time() if now is None else now
    this_minute = int(now) // 60
    stamps = [(this_minute - back) * 60 for back in range(minutes - 1, -1, -1)]
    day_of = [time.strftime("%Y-%m-%d", time.gmtime(stamp)) for stamp in stamps]
    field_of = [str(stamp % DAY_S // 60) for stamp in stamps]
    dates = [time.strftime("%Y-%m-%d", time.gmtime(now - d * DAY_S)) for d in range(days)]
    pipe = r.pipeline(transaction=False)
    minute_days = list(dict.fromkeys(day_of))
    for day in minute_days:
        pipe.hgetall(keys.traffic_minutes(tenant, day))
    for day in dates:
        # As a plain command: redis-py's cluster pipeline refuses ``pfcount`` (which may name
        # keys of several slots); one key is one slot.
        pipe.execute_command("PFCOUNT", keys.daily_visitors(tenant, day))
        pipe.execute_command("PFCOUNT", keys.daily_identified(tenant, day))
        pipe.zrevrange(keys.segment_events(tenant, day), 0, -1, withscores=True)
    replies = pipe.execute()
    per_day = {
        day: {_text(k): int(v) for k, v in raw.items()}
        for day, raw in zip(minute_days, replies[: len(minute_days)], strict=True)
    }
    series = [
        {
            "minute": stamp,
            "events": per_day[day].get(field, 0),
            "impressions": per_day[day].get(f"{field}:imp", 0),
        }
        for stamp, day, field in zip(stamps, day_of, field_of, strict=True)
    ]
    rest = replies[len(minute_days) :]
    daily = []
    for i, day in enumerate(dates):
        visitors, identified, by_segment = rest[3 * i : 3 * i + 3]
        identified = min(int(identified), int(visitors))  # two estimates: keep the share <= 1
        daily.append(
            {
                "date": day,
                "visitors": int(visitors),
                "identified": identified,
                "identified_share": round(identified / visitors, 4) if visitors else None,
                "segments": [
                    {"segment": int(_text(seg)), "events": int(score)} for seg, score in by_segment
                ],
            }
        )
    return {"minutes": series, "days": daily}
