"""A small per-process thread pool for column-wise Arrow work.

Arrow compute releases the GIL, so converting or encoding the columns of a batch on a few threads
uses more than one core while the rest of the import stays simple, sequential Python. The pool
is created lazily and again after a fork (a gunicorn or rq worker must not inherit its threads).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            workers = max(1, min(4, os.cpu_count() or 1))
            _pool = (
                os.getpid(),
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crm-columns"),
            )
        return _pool[1]


def column_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, in order, spread over the pool."""
    items = list(items)
    if len(items) < 2:
        return [fn(x) for x in items]
    return list(_executor().map(fn, items))


class Serial:
    """Runs tasks one at a time on a helper thread, at most one in flight behind the caller.

    Used to overlap Parquet writes and Redis flushes (both release the GIL while they compress or
    wait on the socket) with the validation or encoding of the next batch, while bounding memory
    to one extra batch. An error of a task is raised by the next ``submit`` or by ``wait``.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._last: Future | None = None

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self.wait()
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def close(self) -> None:
        """Wait for the last task (its error is raised) and stop the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
