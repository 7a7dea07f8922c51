"""A Redis Cluster master killed under a collect load: no acknowledged event lost.

A real ``offerwise serve`` (2 gunicorn workers) and ``offerwise worker`` run on the session's
local cluster (3 masters, 3 replicas; ``--redis-cluster``), the job queue on the single server
beside it. Clients send batches with unique event ids and resend what was not answered 200.
The master serving the tenant's slot (its stream, profiles, dedupe hashes) is killed with
kill -9 mid-load; its replica takes over after the cluster's node timeout and an election.

What a 200 promises across such a failover: Redis replicates asynchronously, so a master can
acknowledge a write and die before its replica has it. With ``OFFERWISE_REDIS_WAIT_REPLICAS=1``
collect sends ``WAIT 1 <timeout>`` after the batch's script on the same connection and answers
200 only once the replica confirmed the writes (else 503, and the client's resend is
deduplicated), so the promoted replica holds every acknowledged event. That is what this test
checks, strictly: every event answered 200 is stored exactly once over the stream and the
archive afterwards. Without WAIT (the default) a failover can lose the events acknowledged in
the last replication round trip (typically well under a millisecond on one network, more
under load); the README's Durability paragraph says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.local_cluster import LocalCluster
from store import keys
from tests.helpers import wait_for
from tests.system.collect_load import CollectLoad
from tests.system.service import Service
from tests.system.test_faults import (
    LOAD_S,
    TENANT,
    Timeline,
    assert_load_went_on,
    assert_ready_without_help,
    check_exactly_once,
    diagnostics,
    drain_and_stop_workers,
)

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster_service(
    redis_cluster: LocalCluster, redis_url: str, redis_server: str, tmp_path: Path
) -> Iterator[Service]:
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        "REDIS_URL": redis_cluster.url,
        "OFFERWISE_QUEUE_REDIS_URL": redis_server,
        "OFFERWISE_REDIS_WAIT_REPLICAS": "1",
        "OFFERWISE_REDIS_WAIT_TIMEOUT_MS": "1000",
    }
    service = Service(tmp_path / "v", logs, env)
    try:
        service.start_serve(workers=2)
        yield service
    finally:
        service.stop()


def fail_over(cluster: LocalCluster, timeline: Timeline) -> float:
    """kill -9 of the master of the tenant's slot; returns once its replica has taken over."""
    stream = keys.event_stream(TENANT)
    master = cluster.master_of(stream)
    replica = cluster.replica_of(master)
    killed_at = time.monotonic()
    cluster.kill(master)
    timeline.add(f"killed the master of {stream} (port {master.port})", killed_at)

    def promoted() -> bool:
        try:
            return cluster.master_of(stream).port == replica.port
        except Exception:
            return False

    wait_for(promoted, "the replica taking over", timeout=30, every=0.05)
    timeline.add(f"replica {replica.port} is the master")
    cluster.restart(master)  # it rejoins as the new master's replica
    timeline.add(f"restarted {master.port}")
    return killed_at


@pytest.mark.timeout(240)
def test_master_killed_under_collect_load_loses_no_acknowledged_event(
    redis_cluster: LocalCluster, cluster_service: Service
) -> None:
    service = cluster_service
    site_key = service.create_tenant(TENANT)
    service.start_worker()
    load = CollectLoad(service.base_url, site_key, clients=4)
    timeline = Timeline()
    with diagnostics(service, load, timeline):
        load.start()
        timeline.start = load.started_at
        try:
            timeline.sleep_until(4.0)
            killed_at = fail_over(redis_cluster, timeline)
            timeline.sleep_until(LOAD_S)
        finally:
            load.stop()
        timeline.add(f"load stopped: {load.summary()}")
        assert_ready_without_help(service)
        redis_cluster.wait_ok()
        timeline.add("every node says cluster_state:ok")
        drain_and_stop_workers(service, timeline)
        # "always": no allowance at all for a lost acknowledged event.
        check_exactly_once(service, load, [killed_at], "always")
        assert_load_went_on(load, after=killed_at)
        assert any(status != 200 for status in load.answers), (
            "the failover cost no request: was the right master killed?"
        )
