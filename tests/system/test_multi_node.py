"""Two API nodes and two workers on one store behave as one service (issue 15 item 4).

Two ``offerwise serve`` processes (2 gunicorn workers each, on their own ports, as two hosts
behind a load balancer would run) and two ``offerwise worker`` processes share one store: the
session's Redis, or with ``--redis-cluster`` the local Redis Cluster (job queue beside it). They
share one data dir too, for the model artifacts and the archive: on separate hosts that is a
shared volume or the object store.

- **hot swap**: a champion promoted through node A's staff API is what node B serves next;
- **campaigns**: one created through A is listed, and shown, by B; one paused through B stops
  on A;
- **rate limits**: a tenant's per-second budget is one budget over both nodes;
- **archiver lock**: both workers archive the same tenant under load, one at a time: every
  acknowledged event is archived exactly once, and both workers took part.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from clickstream.catalog import load_catalog
from models import registry
from models.pipeline import train_and_register
from models.synthetic import SyntheticConfig
from models.training import TrainParams
from store import keys
from store.tenants import rotate_keys, update_tenant
from tests.conftest import STAFF_TOKEN
from tests.helpers import wait_for
from tests.synth_world import World, make_world
from tests.system.collect_load import CollectLoad
from tests.system.service import Service

FAST = TrainParams(max_rounds=40, early_stopping=10)
TENANT = "multi"
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


@pytest.fixture
def world(redis_url: str, shared_data: Path, geo_dir: Path, tmp_path: Path) -> World:
    """A trained tenant on the test's store (the ``redis_url`` fixture: one server or a cluster)."""
    world = make_world(redis_url, shared_data, geo_dir, tmp_path / "world",
                       SyntheticConfig(customers=800, products=3, seed=23), tenant=TENANT)  # fmt: skip
    update_tenant(world.r, TENANT, holdout_share=0.0, rate_limit=100_000)
    return world


@pytest.fixture
def nodes(world: World, geo_dir: Path, tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    started: list[Service] = []
    try:
        for name in ("a", "b"):
            logs = tmp_path / f"logs-{name}"
            logs.mkdir()
            env = {"REDIS_URL": world.url, "OFFERWISE_GEO_DIR": str(geo_dir)}
            node = Service(world.settings.data_dir, logs, env)
            started.append(node)
            node.start_serve(workers=2)
        yield started[0], started[1]
    finally:
        for node in started:
            node.stop()


def served_by(node: Service, site: str, visitor: str = "v-multi") -> str:
    res = requests.get(
        f"{node.base_url}/v1/recommend",
        params={"site": site, "visitor": visitor, "n": 3},
        timeout=10,
    )
    assert res.status_code == 200, res.text
    return res.json()["source"]


def test_two_nodes_and_two_workers_behave_as_one_service(
    world: World, nodes: tuple[Service, Service]
) -> None:
    a, b = nodes
    tenant_keys = rotate_keys(world.r, TENANT)
    site, admin = tenant_keys["site_key"], {"Authorization": f"Bearer {tenant_keys['admin_key']}"}

    # -- hot swap: promoted through A, served by both -------------------------------------
    first = train_and_register(world.r, world.settings, TENANT, params=replace(FAST))
    second = train_and_register(
        world.r, world.settings, TENANT, params=replace(FAST, seed=99), auto_promote=False
    )
    v1, v2 = first["version"], second["version"]
    assert registry.champion(world.r, TENANT) == v1
    wait_for(lambda: served_by(a, site) == served_by(b, site) == f"model:{v1}", "both on v1", 10)
    res = requests.post(
        f"{a.base_url}/v1/staff/tenants/{TENANT}/models/{v2}/promote", headers=STAFF, timeout=30
    )
    assert res.status_code == 200, res.text
    promoted_at = time.monotonic()
    wait_for(lambda: served_by(b, site) == f"model:{v2}", "node B serving the new champion", 10)
    wait_for(lambda: served_by(a, site) == f"model:{v2}", "node A serving the new champion", 10)
    swap_s = time.monotonic() - promoted_at
    # Every gunicorn worker of both nodes (a few answers each: requests spread over them).
    for node in (a, b):
        assert {served_by(node, site, f"v{i}") for i in range(12)} == {f"model:{v2}"}

    # -- campaigns: created on A, seen and shown on B; paused on B, gone on A -----------------
    _, products = load_catalog(world.r, TENANT)
    product = sorted(products)[0]
    body = {"name": "Multi node", "offer": {"product_id": product}, "control_share": 0.0}
    res = requests.post(f"{a.base_url}/v1/admin/campaigns", json=body, headers=admin, timeout=10)
    assert res.status_code == 201, res.text
    campaign = res.json()["id"]
    listed = requests.get(f"{b.base_url}/v1/admin/campaigns", headers=admin, timeout=10)
    assert campaign in {c["id"] for c in listed.json()["campaigns"]}, listed.text

    def first_offer(node: Service) -> dict:
        res = requests.get(
            f"{node.base_url}/v1/recommend",
            params={"site": site, "visitor": "v-campaign", "n": 3},
            timeout=10,
        )
        assert res.status_code == 200, res.text
        return res.json()["offers"][0]

    wait_for(lambda: first_offer(b)["product_id"] == product, "node B showing the campaign", 10)
    res = requests.post(
        f"{b.base_url}/v1/admin/campaigns/{campaign}/pause", headers=admin, timeout=10
    )
    assert res.status_code == 200, res.text
    shown = requests.get(f"{a.base_url}/v1/admin/campaigns/{campaign}", headers=admin, timeout=10)
    assert shown.json()["status"] == "paused", shown.text

    # -- rate limits: one budget over both nodes ---------------------------------------------
    update_tenant(world.r, TENANT, rate_limit=10)
    time.sleep(2.5)  # each process's key cache (2 s) picks up the new limit
    check_shared_rate_limit(a, b, site)

    # -- archiver lock: two workers, one tenant, every event archived once -------------------
    update_tenant(world.r, TENANT, rate_limit=1_000_000)
    time.sleep(2.5)
    workers = [a.start_worker(), b.start_worker()]
    loads = [
        CollectLoad(node.base_url, site, clients=2, prefix=f"{name}-")
        for name, node in (("a", a), ("b", b))
    ]
    for load in loads:
        load.start()
    holders = watch_lock(world, seconds=8.0)
    for load in loads:
        load.stop()
    stream = keys.event_stream(TENANT)
    wait_for(lambda: world.r.xlen(stream) == 0, "the workers archiving the stream", 120, 0.5)
    assert all(w.poll() is None for w in workers), "a worker died"
    check_archived_once(world, loads)
    print(
        f"hot swap seen by both nodes {swap_s:.2f} s after the promotion; archiver lock held by "
        f"{len(holders)} worker(s) in turn during the load: {holders}; "
        + "; ".join(load.summary() for load in loads)
    )


def watch_lock(world: World, seconds: float) -> dict[str, int]:
    """Token of the archiver holding the tenant's lock -> times seen, sampled for ``seconds``."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        token = world.r.get(keys.archive_lock(TENANT))
        if token:
            seen[token.decode()] = seen.get(token.decode(), 0) + 1
        time.sleep(0.01)
    return seen


def check_shared_rate_limit(a: Service, b: Service, site: str) -> None:
    """10 batches to A then 5 to B within one second: 10 answered 200, B's 5 refused 429."""
    url = "/v1/collect"
    for attempt in range(5):
        # Start just after a second turns, so all 15 requests fall in one rate window.
        time.sleep(1.02 - time.time() % 1)
        second = int(time.time())
        statuses = []
        for i in range(15):
            node = a if i < 10 else b
            body = {
                "site": site,
                "visitor": f"rl-{attempt}",
                "events": [{"id": f"rl-{attempt}-{i}", "type": "page_view"}],
            }
            statuses.append(requests.post(node.base_url + url, json=body, timeout=10).status_code)
        if int(time.time()) != second:
            continue  # crossed into the next window: try again
        assert statuses[:10] == [200] * 10, statuses
        assert statuses[10:] == [429] * 5, f"node B did not see node A's use: {statuses}"
        return
    pytest.fail("could not send 15 requests within one second in 5 attempts")


def check_archived_once(world: World, loads: list[CollectLoad]) -> None:
    from clickstream.archiver import read_archive

    acked = {(b.visitor, i) for load in loads for b in load.batches if b.acked_at for i in b.ids}
    sent = {(b.visitor, i) for load in loads for b in load.batches for i in b.ids}
    assert not any(load.unexpected for load in loads), [load.summary() for load in loads]
    assert acked == sent, "some batches were never answered 200"
    table = read_archive(world.settings.events_dir, TENANT, columns=["visitor", "id"], dedupe=False)
    rows = list(zip(table["visitor"].to_pylist(), table["id"].to_pylist(), strict=True))
    load_rows = [row for row in rows if row in sent]
    assert len(load_rows) == len(set(load_rows)), "an event was archived twice"
    assert set(load_rows) == acked, f"lost {sorted(acked - set(load_rows))[:5]}"
