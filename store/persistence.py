"""What Redis keeps on disk, made to forget on demand.

Redis's append-only file is a log: a deleted key's earlier writes stay in it until the file is
rewritten from the live dataset, which by default happens only once it has grown another
512 MB (store.embedded.persistence_args). An erasure must leave no copy on disk, so it asks for
a rewrite and waits for it.

On a Redis Cluster every node keeps its own file, replicas included (a replica's copy of an
erased person is as much a copy as its master's), so each node is rewritten in turn.
"""

from __future__ import annotations

import contextlib
import time

import redis

from store.redis_client import is_cluster


def _servers(r: redis.Redis) -> list[redis.Redis]:
    """One client per server behind ``r``: itself, or each node of a cluster."""
    if is_cluster(r):
        return [node.redis_connection for node in r.get_nodes()]  # type: ignore[attr-defined]
    return [r]


def request_rewrite(r: redis.Redis) -> None:
    """Ask every server behind ``r`` to rewrite its AOF, without waiting (best effort: a managed
    Redis may refuse, and then its own rewrite schedule applies)."""
    for server in _servers(r):
        with contextlib.suppress(redis.RedisError):
            server.bgrewriteaof()


class PersistenceError(RuntimeError):
    pass


def rewrite_append_only_file(r: redis.Redis, timeout_s: float = 60.0) -> str:
    """Rewrite the AOF of every server behind ``r`` (one, or each cluster node); returns the
    least finished outcome of ``rewrite_server``."""
    outcomes = [rewrite_server(server, timeout_s) for server in _servers(r)]
    for worst in ("in progress", "rewritten", "not enabled"):
        if worst in outcomes:
            return worst
    return "not enabled"


def rewrite_server(r: redis.Redis, timeout_s: float = 60.0) -> str:
    """Rewrite one server's AOF from the live data and wait for it; returns what happened:

    - ``"rewritten"``: the new file holds only live data (the old files are removed);
    - ``"not enabled"``: the server keeps no append-only file (nothing to rewrite);
    - ``"in progress"``: still running after ``timeout_s``; it completes on its own.

    Raises PersistenceError when Redis refuses or the rewrite fails (a managed Redis may
    disable BGREWRITEAOF: its provider's retention then applies, which the caller reports).
    """
    if not int(r.info("persistence").get("aof_enabled", 0)):
        return "not enabled"
    try:
        # A rewrite already running was forked before the erasure: Redis then schedules a new
        # one after it, which is the one this waits for.
        r.bgrewriteaof()
    except redis.ResponseError as err:
        raise PersistenceError(f"Redis refused BGREWRITEAOF: {err}") from err
    deadline = time.monotonic() + timeout_s
    while True:
        info = r.info("persistence")
        busy = int(info.get("aof_rewrite_in_progress", 0)) or int(
            info.get("aof_rewrite_scheduled", 0)
        )
        if not busy:
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise PersistenceError("the append-only file rewrite failed; see the Redis log")
            return "rewritten"
        if time.monotonic() > deadline:
            return "in progress"
        time.sleep(0.05)
