"""Settings for a Redis Cluster store: read from the environment once, refused when incomplete."""

from __future__ import annotations

import pytest

from app.settings import load_settings
from store.redis_client import StoreConfigError

QUEUE = {"OFFERWISE_QUEUE_REDIS_URL": "redis://queue:6379/0"}


def test_a_cluster_url_or_the_cluster_flag_names_a_cluster() -> None:
    explicit = load_settings({"REDIS_URL": "redis+cluster://a:7000,b:7001", **QUEUE})
    assert explicit.redis_url == "redis+cluster://a:7000,b:7001"
    assert explicit.queue_redis_url == "redis://queue:6379/0"
    flagged = load_settings(
        {"REDIS_URL": "rediss://u:p@a:7000", "OFFERWISE_REDIS_CLUSTER": "1", **QUEUE}
    )
    assert flagged.redis_url == "rediss+cluster://u:p@a:7000"
    plain = load_settings({"REDIS_URL": "redis://a:6379/0"})
    assert plain.redis_url == "redis://a:6379/0" and plain.queue_redis_url is None


def test_a_cluster_without_a_queue_server_is_refused_with_the_fix() -> None:
    with pytest.raises(StoreConfigError, match="OFFERWISE_QUEUE_REDIS_URL"):
        load_settings({"REDIS_URL": "redis+cluster://a:7000"})


def test_wait_for_replicas_is_read_and_checked() -> None:
    s = load_settings(
        {"OFFERWISE_REDIS_WAIT_REPLICAS": "1", "OFFERWISE_REDIS_WAIT_TIMEOUT_MS": "250"}
    )
    assert (s.wait_replicas, s.wait_timeout_ms) == (1, 250)
    assert load_settings({}).wait_replicas == 0
    with pytest.raises(StoreConfigError, match="WAIT_TIMEOUT_MS"):
        load_settings({"OFFERWISE_REDIS_WAIT_TIMEOUT_MS": "0"})
