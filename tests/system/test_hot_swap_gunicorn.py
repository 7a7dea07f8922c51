"""Issue 4 over real HTTP: "serving switches to a new champion without restart, in every gunicorn
worker, with no failed request during the switch".

tests/models/test_model_serving.py proves the switch inside one process through the Flask test client.
Here the service runs as a user runs it (``offerwise serve --workers 2``, a gunicorn master and
two worker processes) on the session's real redis-server, and several threads send
GET /v1/recommend over TCP while the champion moves back and forth, through the staff HTTP API
and through ``models.registry``.

Which worker answered a request is read from the operating system, not from the product: a
keep-alive connection stays in the worker process that accepted it until one side closes it,
and psutil shows which worker holds the server end of the client's socket. So each worker's answers are followed on
their own, and a worker left on the old model cannot hide behind one that switched.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil
import pytest

from models import registry
from models.pipeline import train_and_register
from models.synthetic import SyntheticConfig
from models.training import TrainParams
from tests.helpers import free_port
from tests.synth_world import World, make_world

HOST = "127.0.0.1"
WORKERS = 2
STAFF_TOKEN = "hot-swap-staff-token"
FAST = TrainParams(max_rounds=40, early_stopping=10)
PINNED_PER_WORKER = 2  # keep-alive connections held in each worker, one load thread each
FRESH_THREADS = 2  # load threads that open a new connection for every request
PER_WINDOW = 20  # answers each worker (and the fresh connections) give between two switches
FINAL_FRESH = 40
HTTP_TIMEOUT = 10.0


# ----------------------------------------------------------------------------- HTTP helpers
def _send(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", headers: dict | None = None
) -> tuple[int, bytes]:
    conn.request(method, path, headers=headers or {})
    res = conn.getresponse()
    return res.status, res.read()


def _source(status: int, body: bytes) -> str:
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    return json.loads(body)["source"]


def _worker_holding(conn: http.client.HTTPConnection, workers: dict[int, psutil.Process]) -> int:
    """The pid of the worker process that holds the server end of this open connection."""
    assert conn.sock is not None, "the server closed the connection; cannot tell the worker"
    port = conn.sock.getsockname()[1]
    for pid, proc in workers.items():
        for c in proc.net_connections(kind="tcp"):
            if c.raddr and c.raddr.port == port and c.raddr.ip == HOST:
                return pid
    raise AssertionError(f"no worker of {sorted(workers)} holds the connection from port {port}")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(redis_server, shared_data, geo_dir, tmp_path_factory) -> World:
    return make_world(redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("hot-swap"),
                      SyntheticConfig(customers=1500, products=4, seed=23), tenant="swap")  # fmt: skip


@pytest.fixture(scope="module")
def versions(world: World) -> tuple[str, str]:
    """(champion, challenger): two trained versions, only the first promoted."""
    first = train_and_register(world.r, world.settings, world.tenant, params=replace(FAST))
    second = train_and_register(
        world.r, world.settings, world.tenant, params=replace(FAST, seed=99), auto_promote=False
    )
    assert first["registry"]["promoted"] is True
    assert second["registry"]["promoted"] is False
    assert registry.champion(world.r, world.tenant) == first["version"]
    return first["version"], second["version"]


@pytest.fixture(scope="module")
def site(world: World) -> str:
    from store.tenants import rotate_keys

    return rotate_keys(world.r, world.tenant)["site_key"]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log: Path
    workers: dict[int, psutil.Process]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=HTTP_TIMEOUT)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the gunicorn master (it stops its workers); kill whatever is left, by pid."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def server(world: World, versions, site, tmp_path_factory) -> Iterator[Server]:
    exe = Path(sys.executable).with_name("offerwise")
    if not exe.exists():
        pytest.skip(f"no offerwise console script next to {sys.executable} (pip install -e .)")
    port = free_port()
    log = tmp_path_factory.mktemp("hot-swap-server") / "server.log"
    env = {
        **os.environ,
        "REDIS_URL": world.url,
        "OFFERWISE_DATA_DIR": str(world.settings.data_dir),
        "OFFERWISE_GEO_DIR": str(world.settings.geo_dir),
        "OFFERWISE_STAFF_TOKEN": STAFF_TOKEN,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--host", HOST, "--port", str(port), "--workers", str(WORKERS)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        srv = Server(proc, port, log, {})
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"offerwise serve exited with {proc.returncode}:\n{srv.log_tail()}")
            conn = srv.connect()
            try:
                if _send(conn, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                pytest.fail(f"/readyz did not answer 200 within 60 s:\n{srv.log_tail()}")
            time.sleep(0.05)
        master = psutil.Process(proc.pid)
        while len(children := master.children()) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children) == WORKERS, f"gunicorn workers: {children}\n{srv.log_tail()}"
        srv.workers = {p.pid: p for p in children}
        yield srv
    finally:
        _stop(proc)


# ----------------------------------------------------------------------------- the load
@dataclass(frozen=True)
class Answer:
    start: float
    end: float
    worker: int  # pid, or 0 for a fresh-connection request (worker not looked up)
    source: str


@dataclass
class Load:
    server: Server
    site: str
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def path(self, visitor: str) -> str:
        return f"/v1/recommend?site={self.site}&visitor={visitor}&n=3"

    def pinned(self, conn: http.client.HTTPConnection, worker: int, visitor: str) -> None:
        """Requests on one keep-alive connection, each credited to the worker holding it.

        A worker over its share of connections closes one now and then (``Connection: close``,
        app.connection_balance): the next request reconnects, its answer is credited to no
        worker in particular, and the thread follows the worker holding the new connection."""
        known = conn.sock is not None  # False once the server closed it (even while pinning)
        try:
            while not self.stop.is_set():
                start = time.monotonic()
                status, body = _send(conn, self.path(visitor))  # http.client reopens if closed
                credit = worker if known else 0
                self.answers.append(Answer(start, time.monotonic(), credit, _source(status, body)))
                if conn.sock is None:
                    known = False
                elif not known:
                    worker, known = _worker_holding(conn, self.server.workers), True
        except (OSError, http.client.HTTPException) as err:
            self.errors.append(f"keep-alive connection to worker {worker}: {err!r}")

    def fresh(self, visitor: str) -> None:
        """A new TCP connection for every request, so the kernel spreads them over workers."""
        while not self.stop.is_set():
            conn = self.server.connect()
            start = time.monotonic()
            try:
                status, body = _send(conn, self.path(visitor), headers={"Connection": "close"})
            except (OSError, http.client.HTTPException) as err:
                self.errors.append(f"fresh connection: {err!r}")
                continue
            finally:
                conn.close()
            self.answers.append(Answer(start, time.monotonic(), 0, _source(status, body)))

    def wait_for_answers(self, after: float, timeout: float = 20.0) -> None:
        """Until every worker (and the fresh connections) answered requests sent after ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            counts = dict.fromkeys([*self.server.workers, 0], 0)
            for a in self.answers[-2000:]:
                if a.start > after:
                    counts[a.worker] += 1
            if all(n >= PER_WINDOW for n in counts.values()):
                return
            if self.errors or time.monotonic() > deadline:
                pytest.fail(
                    f"load stalled: answers since the switch {counts}, errors {self.errors[:5]}"
                    f"\n{self.server.log_tail()}"
                )
            time.sleep(0.01)


def _pin(srv: Server, load: Load) -> list[tuple[http.client.HTTPConnection, int]]:
    """Open connections until each worker holds PINNED_PER_WORKER of them (one request each)."""
    held: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in srv.workers}
    used: dict[http.client.HTTPConnection, float] = {}
    deadline = time.monotonic() + 20
    while any(len(c) < PINNED_PER_WORKER for c in held.values()):
        if time.monotonic() > deadline:
            counts = {pid: len(conns) for pid, conns in held.items()}
            pytest.fail(f"could not reach every worker: connections per worker {counts}")
        for conn, last in used.items():  # within gunicorn's 5 s keep-alive on a slow machine
            if time.monotonic() - last > 2:
                assert _send(conn, load.path("pinning"))[0] == 200
                used[conn] = time.monotonic()
        conn = srv.connect()
        status, body = _send(conn, load.path("pinning"))
        assert status == 200, body
        pid = _worker_holding(conn, srv.workers)
        if len(held[pid]) < PINNED_PER_WORKER:
            held[pid].append(conn)
            used[conn] = time.monotonic()
        else:
            conn.close()
    return [(conn, pid) for pid, conns in held.items() for conn in conns]


@dataclass(frozen=True)
class Switch:
    how: str
    start: float
    end: float
    champion: str


# ----------------------------------------------------------------------------- the test
def test_champion_switch_reaches_every_gunicorn_worker_with_no_failed_request(
    world: World, versions: tuple[str, str], site: str, server: Server
) -> None:
    first, second = versions
    staff = {"Authorization": f"Bearer {STAFF_TOKEN}"}
    base = f"/v1/staff/tenants/{world.tenant}/models"

    def staff_post(path: str) -> dict:
        conn = server.connect()
        try:
            status, body = _send(conn, base + path, "POST", staff)
        finally:
            conn.close()
        assert status == 200, body
        return json.loads(body)

    actions = {
        "staff API promote": lambda: staff_post(f"/{second}/promote"),
        "staff API rollback": lambda: staff_post("/rollback"),
        "registry.promote": lambda: registry.promote(world.r, world.tenant, second),
        "registry.rollback": lambda: registry.rollback(world.r, world.tenant),
    }
    plan = [
        ("staff API promote", second),
        ("registry.rollback", first),
        ("registry.promote", second),
        ("staff API rollback", first),
        ("staff API promote", second),  # the final switch: the new champion stays
    ]

    load = Load(server, site)
    pinned = _pin(server, load)
    threads = [
        threading.Thread(target=load.pinned, args=(conn, pid, f"pinned-{i}"), daemon=True)
        for i, (conn, pid) in enumerate(pinned)
    ] + [
        threading.Thread(target=load.fresh, args=(f"fresh-{i}",), daemon=True)
        for i in range(FRESH_THREADS)
    ]  # fmt: skip
    began = time.monotonic()
    for t in threads:
        t.start()
    switches: list[Switch] = []
    try:
        load.wait_for_answers(after=began)
        for how, champion in plan:
            start = time.monotonic()
            out = actions[how]()
            end = time.monotonic()
            assert out["champion"] == champion and out["changed"] is True, (how, out)
            switches.append(Switch(how, start, end, champion))
            load.wait_for_answers(after=end)
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=HTTP_TIMEOUT + 5)

    # No failed request: every answer a 200 from a model, no connection error.
    assert load.errors == [], f"{load.errors[:10]}\n{server.log_tail()}"
    assert not [t.name for t in threads if t.is_alive()], "a load thread hung"
    expected = {f"model:{first}", f"model:{second}"}
    bad = [a.source for a in load.answers if a.source not in expected]
    assert bad == [], f"{len(bad)} of {len(load.answers)} answers not 200 from a model: {bad[:5]}"
    assert {a.source for a in load.answers} == expected

    # Each switch reached every worker at once: a request sent after a switch returned and
    # answered before the next one started comes from the new champion, in each worker.
    windows = [(began, switches[0].start, first, "before the first switch")] + [
        (s.end, nxt.start if nxt else float("inf"), s.champion, f"after {s.how} -> {s.champion}")
        for s, nxt in zip(switches, [*switches[1:], None], strict=True)
    ]  # fmt: skip
    for lo, hi, champion, label in windows:
        inside = [a for a in load.answers if lo < a.start and a.end < hi]
        stale = [a for a in inside if a.source != f"model:{champion}"]
        assert stale == [], f"{label}: {len(stale)} of {len(inside)} answers from another model"
        served_by = {a.worker for a in inside}
        assert set(server.workers) <= served_by, f"{label}: workers that answered {served_by}"

    # After the final switch: a fresh connection lands on the new champion every time, and
    # each worker (found from its connections) answers with it.
    final = f"model:{second}"
    assert registry.champion(world.r, world.tenant) == second
    seen: dict[int, set[str]] = {}
    for conn, pid in pinned:
        status, body = _send(conn, load.path("after"))
        seen.setdefault(pid, set()).add(_source(status, body))
        conn.close()
    for i in range(FINAL_FRESH):
        conn = server.connect()
        try:
            status, body = _send(conn, load.path(f"after-{i}"))
            pid = _worker_holding(conn, server.workers)
        finally:
            conn.close()
        seen.setdefault(pid, set()).add(_source(status, body))
    assert seen == {pid: {final} for pid in server.workers}, seen

    # Without restart: the same two worker processes served from start to end, and neither
    # logged a failed model load or an error.
    master = psutil.Process(server.proc.pid)
    assert {p.pid for p in master.children()} == set(server.workers)
    log = server.log.read_text(errors="replace")
    for marker in ("could not load model", "Traceback", "[ERROR]", "[CRITICAL]", '"level":"error"'):
        assert marker not in log, f"server log has {marker!r}:\n{server.log_tail()}"
