"""A private redis-server for a benchmark: a free port on 127.0.0.1, nothing persisted."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench.child_processes import free_port
from store.embedded import find_redis_server


def start_private_redis(
    workdir: Path, preexec_fn: Callable[[], None] | None = None
) -> tuple[subprocess.Popen, str]:
    """The server process and its URL, once it answers PING."""
    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")
