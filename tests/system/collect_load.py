"""A collect load that behaves as a careful client: unique event ids, and a batch that was not
answered 200 is sent again, byte for byte, until it is.

Each client thread has its own ``requests`` session and sends one batch at a time. A 503 or 429
is retried after its Retry-After (capped, so a test does not sleep for a backlog guard's 30 s),
a dropped connection or a timeout after a short pause. What the test needs afterwards is
recorded per batch: its events, how many attempts it took, and when the 200 arrived.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import orjson
import requests

EVENTS_PER_BATCH = 5
VISITORS_PER_CLIENT = 20
REQUEST_TIMEOUT_S = 5.0
MAX_RETRY_WAIT_S = 2.0
# A batch still unanswered this long after its first attempt is given up (and reported).
GIVE_UP_AFTER_S = 60.0
RETRIED = (429, 503)


@dataclass
class Batch:
    visitor: str
    ids: list[str]
    body: bytes
    attempts: int = 0
    acked_at: float | None = None  # time.monotonic() of the 200
    duplicates: int = 0  # events the 200 called duplicates: an earlier attempt had stored them


@dataclass
class CollectLoad:
    base_url: str
    site_key: str
    clients: int = 4
    prefix: str = ""  # before every visitor and event id: several loads on one tenant
    batches: list[Batch] = field(default_factory=list)
    answers: collections.Counter = field(default_factory=collections.Counter)
    unexpected: list[str] = field(default_factory=list)
    started_at: float = 0.0
    stopped_at: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), name=f"collect-{n}", daemon=True)
            for n in range(self.clients)
        ]

    def start(self) -> None:
        self.started_at = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = GIVE_UP_AFTER_S + 10) -> None:
        """No new batches; waits until every batch sent so far is answered 200 or given up."""
        self._stop.set()
        self.stopped_at = time.monotonic()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load clients still running after {timeout:g} s: {alive}"

    # -- what happened ----------------------------------------------------------------------
    def acked_per_second(self) -> float:
        acked = sum(1 for b in self.batches if b.acked_at is not None)
        return acked / max(1e-9, self.stopped_at - self.started_at)

    def summary(self) -> str:
        acked = [b for b in self.batches if b.acked_at is not None]
        retried = sum(1 for b in self.batches if b.attempts > 1)
        return (
            f"{len(self.batches)} batches ({len(self.batches) * EVENTS_PER_BATCH} events) in "
            f"{self.stopped_at - self.started_at:.1f} s, {len(acked)} answered 200 "
            f"({self.acked_per_second():.0f}/s), {retried} needed a retry, "
            f"{sum(b.duplicates for b in acked)} events reported as duplicates on a retry; "
            f"answers {dict(self.answers)}; unexpected {self.unexpected[:5]}"
        )

    # -- the clients ------------------------------------------------------------------------
    def _client(self, n: int) -> None:
        session = requests.Session()
        seq = 0
        while not self._stop.is_set():
            visitor = f"{self.prefix}c{n}-v{seq % VISITORS_PER_CLIENT}"
            ids = [f"{self.prefix}c{n}-b{seq}-e{j}" for j in range(EVENTS_PER_BATCH)]
            ts = int(time.time() * 1000)
            events = [
                {"id": i, "type": "product_view", "ts": ts, "product_id": f"p{(seq + j) % 50}"}
                for j, i in enumerate(ids)
            ]
            body = orjson.dumps({"site": self.site_key, "visitor": visitor, "events": events})
            batch = Batch(visitor, ids, body)
            with self._lock:
                self.batches.append(batch)
            self._deliver(session, batch)
            seq += 1

    def _count(self, answer: object) -> None:
        with self._lock:
            self.answers[answer] += 1

    def _deliver(self, session: requests.Session, batch: Batch) -> None:
        url = f"{self.base_url}/v1/collect"
        headers = {"Content-Type": "application/json"}
        give_up = time.monotonic() + GIVE_UP_AFTER_S
        while True:
            batch.attempts += 1
            try:
                res = session.post(url, data=batch.body, headers=headers, timeout=REQUEST_TIMEOUT_S)
            except requests.RequestException as err:
                self._count(type(err).__name__)
                wait = 0.1
            else:
                self._count(res.status_code)
                if res.status_code == 200:
                    batch.acked_at = time.monotonic()
                    batch.duplicates = int(res.json().get("duplicates", 0))
                    return
                if res.status_code not in RETRIED:
                    with self._lock:
                        self.unexpected.append(f"{res.status_code}: {res.text[:200]}")
                    return
                wait = min(float(res.headers.get("Retry-After", 1)), MAX_RETRY_WAIT_S)
            if time.monotonic() > give_up:
                with self._lock:
                    self.unexpected.append(f"gave up on {batch.ids[0]} after {batch.attempts}")
                return
            time.sleep(wait)
