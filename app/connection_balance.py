"""Even out long-lived connections over the gunicorn workers.

Each worker listens on its own SO_REUSEPORT socket, and the kernel picks the socket for a new
connection by a hash of the connection's addresses. Many short connections even out. A small
pool of long-lived ones (a proxy's upstream keep-alive pool, a load generator) often does not:
in half the benchmark runs one of 4 workers held 11 to 15 of the 32 connections. That cost
about 15 % of throughput for as long as it lasted, because the other workers then wake up for
every request instead of batching.

So each worker publishes its open-connection count in an array shared with its siblings
(created by the master before it forks them). A worker that holds more than the fair share plus
one answers its next request with ``Connection: close``: the client reconnects, and the kernel
hashes the new connection afresh. Connections are shed one request at a time and only from an
overloaded worker, so the pool settles within moments and then nothing is closed.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

# No count: no worker in the slot, or one that has not served a request yet (counting it as
# holding nothing would make its siblings look overloaded and shed for nothing).
_UNSEEN = -1


class ConnectionBalance:
    """gunicorn server hooks: ``assign`` (pre_fork), ``release`` (child_exit) in the master,
    ``before_request`` (pre_request) in the workers."""

    def __init__(self, slots: int) -> None:
        # Each worker writes only its own slot; readers tolerate a count a request old.
        self._counts = multiprocessing.RawArray("i", [_UNSEEN] * slots)

    def assign(self, server: Any, worker: Any) -> None:
        taken = {getattr(w, "balance_slot", None) for w in server.WORKERS.values()}
        free = [slot for slot in range(len(self._counts)) if slot not in taken]
        # More workers than slots (scaled up with TTIN): that worker simply does not balance.
        worker.balance_slot = free[0] if free else None
        if free:
            self._counts[free[0]] = _UNSEEN

    def release(self, _server: Any, worker: Any) -> None:
        slot = getattr(worker, "balance_slot", None)
        if slot is not None:
            self._counts[slot] = _UNSEEN

    def before_request(self, worker: Any, req: Any) -> None:
        slot = getattr(worker, "balance_slot", None)
        mine = getattr(worker, "nr_conns", None)  # kept by the gthread worker
        if slot is None or mine is None:
            return
        counts = self._counts
        counts[slot] = mine
        live = [count for count in counts if count != _UNSEEN]
        fair = -(-sum(live) // len(live))  # ceiling
        if mine > fair + 1:
            req.force_close()
            counts[slot] = mine - 1  # so that siblings do not shed on its account meanwhile
