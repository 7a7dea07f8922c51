"""Redis connections for the process: ``REDIS_URL`` when set, else the embedded server."""

from __future__ import annotations

import atexit
import os
import threading
from typing import overload

import redis

from store.config import Settings
from store.embedded import EmbeddedRedis

_lock = threading.Lock()
_clients: dict[tuple[str, bool], redis.Redis] = {}
_embedded: EmbeddedRedis | None = None


@overload
def reply_text(v: bytes | str) -> str: ...
@overload
def reply_text(v: None) -> None: ...
def reply_text(v: bytes | str | None) -> str | None:
    """A Redis reply value as text: clients may or may not decode responses."""
    return v.decode() if isinstance(v, bytes) else v


def redis_url(settings: Settings, role: str = "cli") -> str:
    """The URL of the store; starts (or joins) the embedded server when no REDIS_URL is set.

    A process that joins the embedded server releases it at exit, which stops the server once no
    other live process uses it.
    """
    global _embedded
    if settings.redis_url:
        return settings.redis_url
    with _lock:
        if _embedded is None:
            _embedded = EmbeddedRedis(
                settings.redis_dir, settings.redis_server, settings.redis_fsync
            )
            url = _embedded.acquire(role)
            atexit.register(release_embedded)
            return url
        return _embedded.url


def embedded_server() -> EmbeddedRedis | None:
    """The embedded server this process started or joined (None with an external Redis)."""
    return _embedded


def release_embedded() -> bool:
    global _embedded
    with _lock:
        if _embedded is None:
            return False
        stopped = _embedded.release()
        _embedded = None
        _clients.clear()
        return stopped


def get_redis(settings: Settings, decode: bool = False) -> redis.Redis:
    """A process-wide client (connection pool) for the store.

    ``decode=False`` returns bytes; rq requires that. Pools are per process: gunicorn workers fork
    after import, so a client is created lazily in each worker, keyed also by pid.
    """
    url = redis_url(settings)
    key = (f"{os.getpid()}:{url}", decode)
    client = _clients.get(key)
    if client is None:
        # RESP2: redis-py 8 defaults to RESP3 and then converts every sorted-set score back to
        # the RESP2 shape in Python, which cost more than the whole popularity ranking.
        client = redis.Redis.from_url(
            url, decode_responses=decode, health_check_interval=30, protocol=2
        )
        _clients[key] = client
    return client


def reset_clients() -> None:
    """Forget cached clients (tests switch servers between sessions)."""
    with _lock:
        _clients.clear()
