"""A real `offerwise serve` (gunicorn) on a private Redis, and a small client of its public API.

For the campaign simulation, the trigger benchmark and their system test: everything goes
through HTTP as a shop and its marketing team would use it (the staff API creates the tenant,
the admin API loads the catalog and runs campaigns, the site key collects and asks for offers),
so what they measure includes gunicorn, the fast lane, Flask and the scripts.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.child_processes import die_with_parent, free_port  # noqa: E402 (needs ROOT on the path)
from bench.private_redis import start_private_redis  # noqa: E402

HOST = "127.0.0.1"


@dataclass
class LiveServer:
    base_url: str
    redis_url: str
    staff_token: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # of the service: for CLI commands


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as res:
            if res.status == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"offerwise serve did not answer {url}\n{tail}")
        time.sleep(0.2)


def _wait_workers(proc: subprocess.Popen, count: int, timeout: float = 60.0) -> None:
    """The first worker answers readiness while the others still start: wait for all."""
    import psutil

    deadline = time.monotonic() + timeout
    while len(psutil.Process(proc.pid).children()) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"offerwise serve did not start {count} workers")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def live_server(
    workers: int = 2,
    threads: int = 4,
    setup: Callable[[Path, dict[str, str]], dict[str, str]] | None = None,
) -> Iterator[LiveServer]:
    """A private redis-server and `offerwise serve` on it, both stopped on the way out (and
    killed with this process if it dies: die_with_parent). ``setup(workdir, env)`` runs
    before the service starts (CLI commands on its data dir) and returns more environment."""
    workdir = Path(tempfile.mkdtemp(prefix="offerwise-live-"))
    (workdir / "redis").mkdir()
    redis_proc, redis_url = start_private_redis(workdir / "redis", preexec_fn=die_with_parent)
    serve_proc = None
    try:
        port = free_port()
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if k != "OFFERWISE_ACCESS_LOG"}
        env.update(
            REDIS_URL=redis_url,
            OFFERWISE_DATA_DIR=str(workdir / "var"),
            OFFERWISE_STAFF_TOKEN=token,
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        )
        if setup is not None:
            env.update(setup(workdir, env))
        log = workdir / "serve.log"
        with open(log, "wb") as out:
            serve_proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", HOST, "--port", str(port),
                 "--workers", str(workers), "--threads", str(threads)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )  # fmt: skip
        base = f"http://{HOST}:{port}"
        _wait_ready(base + "/readyz", serve_proc, log)
        _wait_workers(serve_proc, workers)
        yield LiveServer(base, redis_url, token, workdir, env)
    finally:
        if serve_proc is not None:
            _stop(serve_proc)
        _stop(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)


class ApiError(RuntimeError):
    pass


def _checked(res: requests.Response, *ok: int) -> dict:
    if res.status_code not in (ok or (200,)):
        raise ApiError(f"{res.request.method} {res.url}: {res.status_code} {res.text[:500]}")
    return res.json()


class ShopApi:
    """One tenant seen from outside: its admin key for the marketing side, its site key for
    the shop's pages. Thread-safe: one HTTP session per thread."""

    def __init__(self, base_url: str, site_key: str, admin_key: str) -> None:
        self.base_url = base_url
        self.site_key = site_key
        self._admin = {"Authorization": f"Bearer {admin_key}"}
        self._local = threading.local()
        self._ids = itertools.count()

    @classmethod
    def create_tenant(cls, server: LiveServer, name: str, rate_limit: int = 1_000_000) -> ShopApi:
        res = requests.post(
            f"{server.base_url}/v1/staff/tenants",
            json={"name": name, "rate_limit": rate_limit},
            headers={"Authorization": f"Bearer {server.staff_token}"},
            timeout=30,
        )
        body = _checked(res, 201)
        return cls(server.base_url, body["site_key"], body["admin_key"])

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            # No proxy or netrc lookups from the environment on every request: they cost the
            # client more CPU than the server spends answering, on the same 2 cores.
            s.trust_env = False
        return s

    # -- admin -------------------------------------------------------------------------------

    def admin(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: object) -> dict:
        res = self.session.request(
            method, self.base_url + path, headers=self._admin, timeout=30, **kw
        )
        return _checked(res, *ok)

    def put_catalog(self, products: list[dict]) -> dict:
        return self.admin("PUT", "/v1/admin/catalog", json=products)

    def create_campaign(self, body: dict) -> dict:
        return self.admin("POST", "/v1/admin/campaigns", ok=(201,), json=body)

    def report(self, name: str) -> dict:
        return self.admin("GET", f"/v1/admin/campaigns/{name}/report")

    # -- the shop's pages --------------------------------------------------------------------

    def event(self, type_: str, **fields: object) -> dict:
        return {"id": f"e{next(self._ids)}", "type": type_, "ts": int(time.time() * 1000), **fields}

    def collect(self, visitor: str, events: list[dict]) -> dict:
        res = self.session.post(
            self.base_url + "/v1/collect",
            json={"site": self.site_key, "visitor": visitor, "events": events},
            timeout=30,
        )
        body = _checked(res)
        if body["accepted"] != len(events) or body.get("flagged"):
            raise ApiError(f"collect for {visitor}: {body}")
        return body

    def recommend(self, visitor: str, n: int = 3) -> list[dict]:
        res = self.session.get(
            self.base_url + "/v1/recommend",
            params={"site": self.site_key, "visitor": visitor, "n": n},
            timeout=30,
        )
        return _checked(res)["offers"]
