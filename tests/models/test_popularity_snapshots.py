"""The per-process popularity snapshot: served while fresh, re-read after its TTL, off at 0."""

from __future__ import annotations

import redis

from models.popularity import SNAPSHOT_SIZE, PopularitySnapshots


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_is_reused_while_fresh_and_reread_after_ttl(r: redis.Redis) -> None:
    clock = Clock()
    snaps = PopularitySnapshots(ttl=1.0, clock=clock)
    r.zadd("{t:x}:pop", {"a": 3.0, "b": 2.0})
    assert snaps.get(r, "{t:x}:pop") == [("a", 3.0), ("b", 2.0)]
    r.zadd("{t:x}:pop", {"c": 9.0})
    clock.now += 0.5
    assert snaps.get(r, "{t:x}:pop")[0] == ("a", 3.0)  # still the snapshot
    clock.now += 0.6
    assert snaps.get(r, "{t:x}:pop")[0] == ("c", 9.0)  # re-read after the TTL


def test_zero_ttl_always_reads_and_snapshot_is_bounded(r: redis.Redis) -> None:
    snaps = PopularitySnapshots(ttl=0.0)
    r.zadd("{t:y}:pop", {f"p{i}": float(i) for i in range(SNAPSHOT_SIZE + 40)})
    top = snaps.get(r, "{t:y}:pop")
    assert len(top) == SNAPSHOT_SIZE and top[0] == (f"p{SNAPSHOT_SIZE + 39}", SNAPSHOT_SIZE + 39.0)
    r.zadd("{t:y}:pop", {"new": 1e9})
    assert snaps.fresh("{t:y}:pop") is None
    assert snaps.get(r, "{t:y}:pop")[0] == ("new", 1e9)
