"""`offerwise serve`: a busy port is a clear error; connections spread over the workers.

The workers bind their own SO_REUSEPORT sockets, so without the check a busy port would make
gunicorn respawn failing workers forever.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until_ok

CLI = str(Path(sys.executable).with_name("offerwise"))


def _env_without_redis() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "REDIS_URL"}


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_busy_port_is_a_clear_error(command, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [CLI, command, "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**_env_without_redis(), "OFFERWISE_DATA_DIR": str(tmp_path / "var")},
        )  # fmt: skip
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "var" / "redis" / "redis.pid").exists()  # nothing was started


def test_keepalive_connections_spread_over_all_workers(redis_server, tmp_path):
    """A client pool's keep-alive connections must not all land on one worker (one core)."""
    import http.client

    import psutil

    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server, "OFFERWISE_DATA_DIR": str(tmp_path / "var")}
    server = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    conns: list[http.client.HTTPConnection] = []
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", server)
        workers = psutil.Process(server.pid).children()
        assert len(workers) == 2
        for _ in range(16):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
            conns.append(conn)
        held = [
            sum(1 for c in w.net_connections("tcp") if c.laddr.port == port and c.raddr)
            for w in workers
        ]
        assert sum(held) == 16 and min(held) > 0, held
    finally:
        for conn in conns:
            conn.close()
        server.terminate()
        server.wait(timeout=30)


def test_workers_freeze_what_they_loaded_so_full_collections_stay_short():
    import gc

    from app.server import gunicorn_options

    hook = gunicorn_options("127.0.0.1", 1, 1)["post_worker_init"]
    try:
        hook(None)
        assert gc.get_freeze_count() > 10_000  # the interpreter, Flask, numpy... all frozen
    finally:
        gc.unfreeze()


def test_ctrl_c_stops_everything_without_a_traceback(tmp_path):
    """Ctrl+C signals the whole process group: the master and every worker at once."""
    import signal

    port = free_port()
    data_dir = tmp_path / "var"
    server = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "3"],
        env={**_env_without_redis(), "OFFERWISE_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/readyz", server)
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert "Traceback" not in output, output[-3000:]
    assert not _redis_alive(data_dir), "the embedded Redis was left running"


def _redis_alive(data_dir: Path) -> bool:
    from store.embedded import EmbeddedRedis

    return EmbeddedRedis(data_dir / "redis").is_running()
