"""The real service as an operator runs it: ``offerwise serve`` and ``offerwise worker`` on the
embedded Redis of one data dir, each a process of its own with its output in a log file.

With ``REDIS_URL`` in ``env`` the processes use that store instead (one server, or a cluster
with the job queue on ``OFFERWISE_QUEUE_REDIS_URL``), as app nodes of a larger deployment do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psutil
import redis
from rq import Worker

from store.embedded import EmbeddedRedis
from store.redis_client import client_for_url
from tests.helpers import free_port, wait_for, wait_for_workers, wait_until_ok

REPO = Path(__file__).resolve().parents[2]


class Service:
    def __init__(self, data_dir: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.logs = logs
        self.env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        self.env["OFFERWISE_DATA_DIR"] = str(data_dir)
        self.env.update(env or {})
        self.external = self.env.get("REDIS_URL")
        self.embedded = EmbeddedRedis(data_dir / "redis")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.serve: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._spawned = 0

    @property
    def events_dir(self) -> Path:
        return self.data_dir / "events"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        self._spawned += 1
        with open(self.logs / f"{self._spawned:02d}-{name}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "app.cli", *args],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def cli(self, *args: str) -> bytes:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=REPO, env=self.env, capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip

    def redis(self) -> redis.Redis:
        if self.external:
            return client_for_url(self.external)
        return self.embedded.client()

    def queue_redis(self) -> redis.Redis:
        url = self.env.get("OFFERWISE_QUEUE_REDIS_URL") or self.external
        return redis.Redis.from_url(url) if url else self.embedded.client()

    # -- processes --------------------------------------------------------------------------
    def start_serve(self, workers: int = 2) -> None:
        self.serve = self._spawn(
            "serve", "serve", "--port", str(self.port), "--workers", str(workers)
        )
        wait_until_ok(f"{self.base_url}/readyz", self.serve, timeout=60)
        wait_for_workers(self.serve, workers)

    def create_tenant(self, name: str) -> str:
        """The new tenant's site key; its rate limit is out of the load's way."""
        created = self.cli("tenant", "create", name, "--rate-limit", "1000000")
        return orjson.loads(created)["site_key"]

    def start_worker(self, wait: bool = True, lock_ttl: float | None = None) -> subprocess.Popen:
        """``offerwise worker`` archiving every half second; with ``wait``, once it runs.
        ``lock_ttl``: its archiver lock's expiry in seconds (the worker's default: 60)."""
        ttl = ["--archive-lock-ttl", f"{lock_ttl:g}"] if lock_ttl is not None else []
        proc = self._spawn(
            "worker", "worker", "--archive-interval", "0.2", "--archive-max-delay", "0.5", *ttl
        )
        self.workers.append(proc)
        if wait:
            self.wait_for_worker(proc)
        return proc

    def wait_for_worker(self, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        """Until the worker holds its lease on the embedded Redis, or with an external store
        has registered with rq (it has started)."""
        if self.external:
            queue = self.queue_redis()

            def started() -> bool:
                return proc.poll() is not None or any(
                    w.pid == proc.pid for w in Worker.all(connection=queue)
                )
        else:
            lease = self.embedded.leases_dir / f"{proc.pid}.worker"

            def started() -> bool:
                return lease.exists() or proc.poll() is not None

        wait_for(started, "the worker starting", timeout)
        assert proc.poll() is None, f"the worker exited with {proc.returncode}"

    def gunicorn_workers(self) -> list[psutil.Process]:
        assert self.serve is not None
        return psutil.Process(self.serve.pid).children()

    def redis_pid(self) -> int:
        return int((self.data_dir / "redis" / "redis.pid").read_text())

    def stop(self) -> None:
        """Warm stops (SIGTERM), then the embedded Redis is released whatever happened."""
        for proc in [*self.workers, *([self.serve] if self.serve else [])]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, *([self.serve] if self.serve else [])]:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if not self.external:
            self.embedded.release()

    def log_tails(self, chars: int = 1500) -> str:
        files = [*sorted(self.logs.glob("*.log")), self.data_dir / "redis" / "redis.log"]
        out = []
        for f in files:
            if f.exists():
                out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)


def kill9(pid: int) -> float:
    """SIGKILL ``pid``; returns the time.monotonic() just before it."""
    at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return at
