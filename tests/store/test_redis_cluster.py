"""The store on a Redis Cluster: URLs, the queue's separate server, the hot script's WAIT, and
(with ``--redis-cluster``) what a cluster changes for the hot script: a node per slot, a lost
script cache, a client kept from one fork to the next."""

from __future__ import annotations

import pytest
import redis

from store.config import Settings
from store.hot_script import HotScript, NotReplicated
from store.redis_client import (
    StoreConfigError,
    is_cluster,
    is_cluster_url,
    parse_cluster_url,
    queue_redis_url,
)


def test_cluster_urls_name_every_seed_and_keep_credentials() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000") == (
        "redis://10.0.0.1:7000/",
        [("10.0.0.1", 7000)],
    )
    first, seeds = parse_cluster_url(
        "rediss+cluster://u:p%40ss@a:7000,b:7001, c/0?ssl_cert_reqs=none"
    )
    assert first == "rediss://u:p%40ss@a:7000/0?ssl_cert_reqs=none"
    assert seeds == [("a", 7000), ("b", 7001), ("c", 6379)]
    assert is_cluster_url("redis+cluster://a:1") and not is_cluster_url("redis://a:1")
    assert not is_cluster_url(None)
    with pytest.raises(StoreConfigError, match="redis\\+cluster://host:port"):
        parse_cluster_url("redis+cluster://")


def test_the_queue_needs_its_own_server_beside_a_cluster() -> None:
    cluster = Settings(redis_url="redis+cluster://a:7000")
    with pytest.raises(StoreConfigError, match="OFFERWISE_QUEUE_REDIS_URL"):
        queue_redis_url(cluster)
    beside = Settings(redis_url="redis+cluster://a:7000", queue_redis_url="redis://q:6379/0")
    assert queue_redis_url(beside) == "redis://q:6379/0"
    assert queue_redis_url(Settings(redis_url="redis://one:6379/0")) == "redis://one:6379/0"


def test_wait_for_more_replicas_than_answer_is_refused(r: redis.Redis) -> None:
    """The session's single server has no replica, each cluster master one: asking for one
    more than there are fails after the timeout, as a ConnectionError (collect: 503). A busy
    replica may miss the short timeout too, so the count confirmed may be below its number."""
    replicas = 1 if is_cluster(r) else 0
    hot = HotScript(r, "return redis.call('INCR', KEYS[1])", replicas + 1, wait_timeout_ms=50)
    with pytest.raises(NotReplicated, match=f"only [0-{replicas}] of {replicas + 1} replicas"):
        hot(["{hs}:n"], [])
    assert isinstance(NotReplicated("x"), redis.ConnectionError)
    # The write was made (the master has it); enough replicas let the call through.
    if replicas:
        assert HotScript(r, "return redis.call('INCR', KEYS[1])", 1)(["{hs}:n"], []) == 2
    assert int(r.get("{hs}:n")) == 1 + replicas


@pytest.mark.cluster
def test_hot_script_on_a_cluster_reloads_a_lost_script_cache(r: redis.Redis) -> None:
    hot = HotScript(r, "return {KEYS[1], ARGV[1]}")
    keys = [f"{{t:tenant-{i}}}:x" for i in range(12)]  # spread over the three masters
    assert [hot([k], ["a"]) for k in keys] == [[k.encode(), b"a"] for k in keys]
    r.script_flush()  # every master forgets it, as a promoted replica has never seen it
    assert [hot([k], ["b"]) for k in keys] == [[k.encode(), b"b"] for k in keys]
    assert len({r.keyslot(k) for k in keys}) > 3  # type: ignore[attr-defined]
