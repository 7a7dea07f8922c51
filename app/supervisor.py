"""`offerwise serve` keeps the embedded Redis it started alive.

Without it a killed or crashed redis-server stayed down until someone ran a CLI command, and
the service answered 503 meanwhile. A thread in gunicorn's master checks the server every
second and starts it again, backing off while starts fail (a full disk, a broken binary) so a
lasting fault is logged at a readable rate instead of retried in a tight loop. Workers recover
on their own: redis-py reconnects on the next command, to the same socket path.
"""

from __future__ import annotations

import logging
import threading

from app.observability import STORE_RESTARTS
from store.embedded import EmbeddedRedis

log = logging.getLogger("offerwise.supervisor")

CHECK_EVERY_S = 1.0
MAX_BACKOFF_S = 30.0


class StoreSupervisor(threading.Thread):
    def __init__(self, embedded: EmbeddedRedis, check_every: float = CHECK_EVERY_S) -> None:
        super().__init__(name="offerwise-store-supervisor", daemon=True)
        self.embedded = embedded
        self.check_every = check_every
        self.stopping = threading.Event()
        self.restarts = 0

    def stop(self) -> None:
        self.stopping.set()

    def check(self) -> bool:
        """One look; True when the server was down and is running again."""
        if not self.embedded.restart_if_down():
            return False
        self.restarts += 1
        STORE_RESTARTS.labels("restarted").inc()
        log.warning("the embedded Redis had stopped; restarted it (%d so far)", self.restarts)
        return True

    def run(self) -> None:
        wait = self.check_every
        while not self.stopping.wait(wait):
            try:
                self.check()
                wait = self.check_every
            except Exception:
                STORE_RESTARTS.labels("failed").inc()
                wait = min(max(wait, self.check_every) * 2, MAX_BACKOFF_S)
                log.exception(
                    "the embedded Redis is down and did not start; next try in %.0f s", wait
                )
