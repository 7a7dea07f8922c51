"""Small builders shared by tests."""

from __future__ import annotations

import itertools
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

import redis
from redis.cluster import ClusterNode, RedisCluster

from store.redis_client import is_cluster

_ids = itertools.count()


def now_ms() -> int:
    return int(time.time() * 1000)


def event(type_: str = "product_view", **fields: object) -> dict:
    e: dict = {"id": f"e{next(_ids)}", "type": type_, "ts": now_ms()}
    if type_ in (
        "product_view",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        "offer_click",
        "offer_impression",
    ):
        e["product_id"] = "p1"
    e.update(fields)
    return e


def batch(site: str, visitor: str = "v1", events: list[dict] | None = None) -> dict:
    return {"site": site, "visitor": visitor, "events": events if events is not None else [event()]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ok(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until GET ``url`` answers 200; fails if ``proc`` (the server) exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as res:
                if res.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None, (
            f"the server exited with {proc.returncode} before {url} answered"
        )
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {timeout:g} s"
        time.sleep(0.2)


def wait_for_workers(server: subprocess.Popen, count: int, timeout: float = 60.0) -> list:
    """The gunicorn master's worker processes once ``count`` run: the first worker can answer
    readiness probes while the others are still starting."""
    import psutil

    deadline = time.monotonic() + timeout
    while len(workers := psutil.Process(server.pid).children()) < count:
        assert server.poll() is None, f"the server exited with {server.returncode}"
        assert time.monotonic() < deadline, f"{len(workers)} of {count} workers started"
        time.sleep(0.1)
    return workers


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0, every: float = 0.1):
    """Until ``check()`` returns something truthy, which is returned; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(every)
    return found


def another_client(r: redis.Redis) -> redis.Redis:
    """A second client of the store behind ``r`` (one server's pool, or the same cluster)."""
    if is_cluster(r):
        nodes = [ClusterNode(n.host, n.port) for n in r.get_nodes()]  # type: ignore[attr-defined]
        return RedisCluster(startup_nodes=nodes)  # type: ignore[return-value]
    return redis.Redis(connection_pool=r.connection_pool)
