"""The store goes away and comes back: collect answers 503 with Retry-After (nothing is kept
that the client would not retry), recommend answers from this process's last copies marked
``degraded``, and both recover by themselves once Redis is back, with no operator action."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from store.config import Settings
from store.embedded import find_redis_server, persistence_args
from tests.helpers import batch, event, free_port

ORIGIN = "https://shop.example"


class RedisProcess:
    """A redis-server of this test's own, with an append-only file, stopped and started at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), *persistence_args()],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def test_collect_503_and_recommend_degraded_while_the_store_is_away(store, tmp_path) -> None:
    from app import create_app
    from clickstream import catalog
    from store.redis_client import reset_clients
    from store.tenants import create_tenant

    r = redis.Redis.from_url(store.url)
    keys = create_tenant(r, "acme", [ORIGIN], rate_limit=10_000)
    products = [
        {"product_id": f"p{i}", "name": f"P{i}", "category": "c", "price": 1.0 + i}
        for i in range(6)
    ]
    catalog.replace_catalog(r, "acme", products)
    reset_clients()
    client = create_app(Settings(data_dir=tmp_path / "var", redis_url=store.url)).test_client()
    site, headers = keys["site_key"], {"Origin": ORIGIN}
    views = [event("product_view", product_id="p3") for _ in range(3)]
    assert (
        client.post("/v1/collect", json=batch(site, "v1", views), headers=headers).status_code
        == 200
    )
    query = f"/v1/recommend?site={site}&visitor=v2&n=3"
    warm = client.get(query, headers=headers)
    assert warm.status_code == 200 and "degraded" not in warm.json
    assert warm.json["offers"][0]["product_id"] == "p3"

    store.kill()
    time.sleep(2.5)  # past the site-key cache's 2 s: the key is resolved from its stale entry
    down = client.post("/v1/collect", json=batch(site, "v1", [event()]), headers=headers)
    assert down.status_code == 503, down.get_data(as_text=True)
    assert down.headers["Retry-After"] == "1" and "store unavailable" in down.json["message"]
    # The fast lane (GET) and Flask's own path (a POST recommend goes there) alike.
    posted = {"site": site, "visitor": "v2", "n": 3}
    for offered in (
        client.get(query, headers=headers),
        client.post("/v1/recommend", json=posted, headers=headers),
    ):
        assert offered.status_code == 200, offered.get_data(as_text=True)
        assert offered.json["degraded"] is True
        assert offered.json["offers"][0]["product_id"] == "p3"
    assert client.get("/readyz").status_code == 503

    store.start()  # the same port and data: the AOF brings the events back
    deadline = time.monotonic() + 10
    while True:
        res = client.post("/v1/collect", json=batch(site, "v1", [event()]), headers=headers)
        if res.status_code == 200:
            break
        assert time.monotonic() < deadline, "collect did not recover by itself"
        time.sleep(0.1)
    back = client.get(query, headers=headers)
    assert back.status_code == 200 and "degraded" not in back.json
    assert client.get("/readyz").status_code == 200
    assert r.xlen("{t:acme}:events") == 4  # the 3 views before and the 1 event after


def test_a_never_seen_site_key_while_the_store_is_away_is_503_not_500(store, tmp_path) -> None:
    from app import create_app
    from store.redis_client import reset_clients

    reset_clients()
    client = create_app(Settings(data_dir=tmp_path / "var", redis_url=store.url)).test_client()
    store.kill()
    res = client.get("/v1/recommend?site=ow_site_unknown&visitor=v1", headers={"Origin": ORIGIN})
    assert res.status_code == 503 and res.headers["Retry-After"] == "1"
    res = client.post("/v1/collect", json=batch("ow_site_unknown", "v1", [event()]))
    assert res.status_code == 503
