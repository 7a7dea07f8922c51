"""Archiver throughput: fill a tenant's stream with N events, archive it, read it back.

Starts its own redis-server on a free port and a temporary data dir, so it touches nothing else.
Prints stream fill rate, archive rate (events/s, with every fsync of the real protocol), the
archive's size on disk, and the read-back rate of ``read_archive``.

    .venv/bin/python bench/bench_archiver.py [--events 200000] [--batch-size 20000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import psutil
import redis

from bench.private_redis import start_private_redis
from clickstream.archiver import Archiver, read_archive
from store import keys

TENANT = "bench"
TYPES = ["page_view", "product_view", "product_view", "search", "add_to_cart", "purchase"]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, redis.Redis]:
    proc, url = start_private_redis(workdir)
    return proc, redis.Redis.from_url(url)


def event(i: int, now: int, rng: random.Random) -> dict:
    etype = rng.choice(TYPES)
    e = {"id": f"e{i}", "type": etype, "ts": now - rng.randint(0, 5000), "server_ts": now,
         "visitor": f"v{rng.randint(0, 20000)}", "url": f"https://shop.example/p/{i % 500}",
         "page_type": "product"}  # fmt: skip
    if etype != "page_view":
        e["product_id"] = f"p{rng.randint(0, 500)}"
        e["category"] = f"c{rng.randint(0, 20)}"
    if etype in ("add_to_cart", "purchase"):
        e["quantity"] = rng.randint(1, 3)
        e["price"] = round(rng.uniform(1, 300), 2)
    if etype == "search":
        e["query"] = "red shoes"
    if rng.random() < 0.05:
        e["experiment"] = {"arm": "b"}  # an unknown field: goes to `extra`
    return e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=20_000)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-archiver-"))
    proc, r = start_redis(work)
    try:
        rng = random.Random(7)
        now = int(time.time() * 1000)
        stream = keys.event_stream(TENANT)
        t0 = time.perf_counter()
        for start in range(0, args.events, 2000):
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(start + 2000, args.events)):
                pipe.xadd(stream, {"e": orjson.dumps(event(i, now, rng))})
            pipe.execute()
        fill_s = time.perf_counter() - t0

        events_dir = work / "events"
        archiver = Archiver(r, events_dir, batch_size=args.batch_size)
        rss0 = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        result = archiver.archive_tenant(TENANT)
        archive_s = time.perf_counter() - t0
        rss1 = psutil.Process().memory_info().rss
        assert result.events == args.events and r.xlen(stream) == 0, result

        t0 = time.perf_counter()
        table = read_archive(events_dir, TENANT)
        read_s = time.perf_counter() - t0
        assert table.num_rows == args.events

        size = sum(p.stat().st_size for p in events_dir.rglob("*.parquet"))
        rate = args.events / archive_s
        print(f"events                 {args.events:>12,}")
        print(f"batch size             {args.batch_size:>12,}  ({result.batches} batches)")
        print(f"stream fill            {args.events / fill_s:>12,.0f} events/s (pipelined XADD)")
        print(f"archive                {rate:>12,.0f} events/s  ({archive_s:.2f} s)")
        print(f"read_archive + dedupe  {args.events / read_s:>12,.0f} events/s  ({read_s:.2f} s)")
        print(f"parquet on disk        {size / 1e6:>12.1f} MB  ({size / args.events:.0f} B/event)")
        print(f"RSS growth archiving   {(rss1 - rss0) / 1e6:>12.1f} MB")
        print(f"summary: archiver {rate:,.0f} events/s on {args.events:,} events (no target set)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
