"""Redis connections for the process: ``REDIS_URL`` when set, else the embedded server.

``REDIS_URL`` may name a Redis Cluster: ``redis+cluster://host:port`` (``rediss+cluster://``
with TLS; several seed nodes as ``host1:port1,host2:port2``). The client is then redis-py's
``RedisCluster``, which routes each command by its key's hash slot. It offers the commands the
service uses under the same names, so the code below takes either as a ``redis.Redis``: every
multi-key command, script and transaction names keys of one tenant only, and those share a slot
(``store.keys``). What a cluster client cannot do is said where it matters: redis-py refuses
scripts and RENAME inside a cluster pipeline (``pipeline_script``), and rq cannot use a cluster
at all (``queue_redis``).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from typing import cast, overload

import redis
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.typing import EncodableT, KeyT

from store.config import Settings
from store.embedded import EmbeddedRedis

_lock = threading.Lock()
_clients: dict[tuple[str, bool], redis.Redis] = {}
_embedded: EmbeddedRedis | None = None


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


class StoreConfigError(RuntimeError):
    """A store URL this process cannot use; the message says what to set."""


def is_cluster_url(url: str | None) -> bool:
    return url is not None and url.partition("://")[0] in CLUSTER_SCHEMES


def is_cluster(r: object) -> bool:
    """Whether ``r`` is a Redis Cluster client (the store) rather than one server's."""
    return isinstance(r, RedisCluster)


def parse_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``redis+cluster://[user:password@]host:port[,host:port...][/...]`` -> (the first seed's
    plain URL, which carries the credentials and options, and every seed's (host, port))."""
    scheme, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    auth, _, hosts = netloc.rpartition("@")
    seeds = []
    for seed in (h.strip() for h in hosts.split(",")):
        if seed:
            host, _, port = seed.rpartition(":")
            seeds.append((host, int(port)) if host else (seed, 6379))
    if scheme not in CLUSTER_SCHEMES or not seeds:
        raise StoreConfigError(f"not a cluster URL: {url!r} (use redis+cluster://host:port)")
    first = f"{CLUSTER_SCHEMES[scheme]}://{auth + '@' if auth else ''}{seeds[0][0]}:{seeds[0][1]}/{tail}"
    return first, seeds


def cluster_client(
    url: str, client_class: type[RedisCluster] = RedisCluster, **kwargs: object
) -> RedisCluster:
    """A ``RedisCluster`` for a ``redis+cluster://`` URL (``parse_cluster_url``)."""
    first, seeds = parse_cluster_url(url)
    nodes = [ClusterNode(host, port) for host, port in seeds]
    return client_class.from_url(first, startup_nodes=nodes, **kwargs)


def client_for_url(url: str, decode: bool = False) -> redis.Redis:
    """A client for ``url``: one server's, or a cluster's (typed as the one-server client, whose
    commands it answers; see the module doc)."""
    # RESP2: redis-py 8 defaults to RESP3 and then converts every sorted-set score back to
    # the RESP2 shape in Python, which cost more than the whole popularity ranking.
    if is_cluster_url(url):
        return cast(
            redis.Redis,
            cluster_client(url, decode_responses=decode, protocol=2, health_check_interval=30),
        )
    return redis.Redis.from_url(url, decode_responses=decode, health_check_interval=30, protocol=2)


@overload
def reply_text(v: bytes | str) -> str: ...
@overload
def reply_text(v: None) -> None: ...
def reply_text(v: bytes | str | None) -> str | None:
    """A Redis reply value as text: clients may or may not decode responses."""
    return v.decode() if isinstance(v, bytes) else v


def redis_url(settings: Settings, role: str = "cli") -> str:
    """The URL of the store; starts (or joins) the embedded server when no REDIS_URL is set.

    A process that joins the embedded server releases it at exit, which stops the server once no
    other live process uses it.
    """
    global _embedded
    if settings.redis_url:
        return settings.redis_url
    with _lock:
        if _embedded is None:
            _embedded = EmbeddedRedis(
                settings.redis_dir, settings.redis_server, settings.redis_fsync
            )
            url = _embedded.acquire(role)
            atexit.register(release_embedded)
            return url
        return _embedded.url


def embedded_server() -> EmbeddedRedis | None:
    """The embedded server this process started or joined (None with an external Redis)."""
    return _embedded


def release_embedded() -> bool:
    global _embedded
    with _lock:
        if _embedded is None:
            return False
        stopped = _embedded.release()
        _embedded = None
        _clients.clear()
        return stopped


def get_redis(settings: Settings, decode: bool = False) -> redis.Redis:
    """A process-wide client (connection pool) for the store.

    ``decode=False`` returns bytes; rq requires that. Pools are per process: gunicorn workers fork
    after import, so a client is created lazily in each worker, keyed also by pid.
    """
    url = redis_url(settings)
    key = (f"{os.getpid()}:{url}", decode)
    client = _clients.get(key)
    if client is None:
        client = client_for_url(url, decode)
        _clients[key] = client
    return client


def queue_redis_url(settings: Settings) -> str:
    """The job queue's Redis: ``OFFERWISE_QUEUE_REDIS_URL``, else the store's own.

    rq cannot run on a Redis Cluster: its keys (``rq:queue:<name>``, ``rq:job:<id>``, its
    registries) carry no common hash tag and it moves ids between them in multi-key transactions
    (rq/rq#1942, open). So with a cluster store the queue lives on a separate single Redis (with
    a replica and the same persistence settings, if jobs must survive its loss). Jobs are small
    and short-lived: the data they work on stays in the cluster.
    """
    if settings.queue_redis_url:
        return settings.queue_redis_url
    url = redis_url(settings)
    if is_cluster_url(url):
        raise StoreConfigError(
            "the job queue (rq) cannot run on a Redis Cluster: set OFFERWISE_QUEUE_REDIS_URL "
            "to a single Redis server for it (see README, Configuration)"
        )
    return url


def queue_redis(settings: Settings) -> redis.Redis:
    """The job queue's connection: rq stores pickled bytes, so replies stay undecoded."""
    url = queue_redis_url(settings)
    key = (f"{os.getpid()}:queue:{url}", False)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(url, health_check_interval=30, protocol=2)
        _clients[key] = client
    return client


def pipeline_script(
    pipe: object, script: Script, keys: Sequence[KeyT], args: Sequence[EncodableT]
) -> None:
    """Queue ``script`` on ``pipe``, one server's or a cluster's pipeline.

    redis-py refuses EVALSHA in a cluster pipeline (a node that lost its script cache, a
    promoted replica for one, would answer NOSCRIPT with no way to reload mid-pipeline), so
    there the script goes as EVAL with its text: Redis compiles it once and caches it by hash.
    The pipeline sends each node its commands in one round trip, as on one server.
    """
    if isinstance(pipe, ClusterPipeline):
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
    else:
        script(keys=keys, args=args, client=pipe)  # type: ignore[arg-type]


def reset_clients() -> None:
    """Forget cached clients (tests switch servers between sessions)."""
    with _lock:
        _clients.clear()
