"""`offerwise serve`: a busy port is a clear error, a port left in TIME_WAIT by a stop under
load is not; connections even out over the workers.

The workers bind their own SO_REUSEPORT sockets, so without the check a busy port would make
gunicorn respawn failing workers forever.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_workers, wait_until_ok

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


def _port_in_time_wait() -> int:
    """A port nothing listens on, with connections the server side closed still in TIME_WAIT
    (as after `offerwise serve` stopped under load)."""
    import psutil

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for _ in clients:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its side goes to TIME_WAIT
        for client in clients:
            client.recv(1)  # the FIN has arrived
            client.close()
    waiting = [
        c
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
    ]
    assert waiting, "the set-up made no TIME_WAIT connection"
    return port


def test_a_port_left_in_time_wait_is_free():
    from app.server import check_port_free

    check_port_free("127.0.0.1", _port_in_time_wait())  # raised "Address already in use"


@pytest.mark.parametrize(
    "options",
    [(), (socket.SO_REUSEADDR,), (socket.SO_REUSEADDR, socket.SO_REUSEPORT)],
    ids=["plain", "reuseaddr", "reuseaddr+reuseport"],
)
@pytest.mark.parametrize("listen_on", ["127.0.0.1", "0.0.0.0"])
def test_a_live_listener_is_still_refused(options, listen_on):
    """However the listener was opened (a running offerwise serve's workers set both options)."""
    from app.server import PortInUse, check_port_free

    with socket.socket() as taken:
        for option in options:
            taken.setsockopt(socket.SOL_SOCKET, option, 1)
        taken.bind((listen_on, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)


def test_serve_restarts_at_once_on_a_port_left_in_time_wait(redis_server, tmp_path):
    port = _port_in_time_wait()
    env = {**os.environ, "REDIS_URL": redis_server, "OFFERWISE_DATA_DIR": str(tmp_path / "var")}
    server = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", server)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "cannot listen" not in err, err


def test_keepalive_connections_even_out_over_the_workers(redis_server, tmp_path):
    """A client pool's long-lived connections end up at most one over the fair share per
    worker (app.connection_balance), however the kernel first hashed them."""
    import http.client

    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server, "OFFERWISE_DATA_DIR": str(tmp_path / "var")}
    server = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "4"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pool = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(40)]
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", server)
        workers = wait_for_workers(server, 4)
        shed = 0
        for _ in range(25):  # http.client reopens a connection the server closed
            for conn in pool:
                conn.request("GET", "/healthz")
                res = conn.getresponse()
                res.read()
                assert res.status == 200
                shed += res.getheader("Connection") == "close"
        held = [
            sum(1 for c in w.net_connections("tcp") if c.laddr.port == port and c.raddr)
            for w in workers
        ]
        assert sum(held) == 40 and max(held) <= 40 // 4 + 1, (held, shed)
    finally:
        for conn in pool:
            conn.close()
        server.terminate()
        server.wait(timeout=30)


def test_workers_freeze_what_they_loaded_so_full_collections_stay_short():
    import gc
    import signal
    from types import SimpleNamespace

    from app.server import gunicorn_options

    hook = gunicorn_options("127.0.0.1", 1, 1)["post_worker_init"]
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        hook(SimpleNamespace(handle_quit=lambda *_: None))
        assert gc.get_freeze_count() > 10_000  # the interpreter, Flask, numpy... all frozen
    finally:
        gc.unfreeze()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_ctrl_c_stops_everything_promptly_without_a_traceback(tmp_path):
    """Ctrl+C signals the whole process group: the master and every worker at once, so each
    worker gets two quit signals; none may hang until the master kills it."""
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
        started = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=60)
        stop_s = time.monotonic() - started
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert "Traceback" not in output, output[-3000:]
    # A worker stuck in its quit handler is killed after graceful_timeout (10 s) and logged so.
    assert "SIGKILL" not in output and stop_s < 9, (stop_s, output[-3000:])
    assert not _redis_alive(data_dir), "the embedded Redis was left running"


def test_a_quit_arriving_while_the_first_is_handled_is_ignored():
    """The deterministic half of the test above: the master's SIGQUIT landing inside the
    handling of the terminal's SIGINT (which deadlocked gthread's thread-pool shutdown)."""
    import signal
    from types import SimpleNamespace

    from app.server import _quit_once

    handled: list[int] = []

    def handle_quit(sig: int, _frame: object) -> None:
        handled.append(sig)
        signal.getsignal(signal.SIGQUIT)(signal.SIGQUIT, None)  # arrives right now

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGQUIT)}
    try:
        _quit_once(SimpleNamespace(handle_quit=handle_quit))
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert handled == [signal.SIGINT]


def _redis_alive(data_dir: Path) -> bool:
    from store.embedded import EmbeddedRedis

    return EmbeddedRedis(data_dir / "redis").is_running()
