"""Who is in which group: treated or control, per campaign and for the tenant-wide holdout.

A person is a customer (``c:<customer hash>``) once identified, else a visitor
(``v:<visitor id>``). Their group is drawn deterministically from (tenant secret, campaign,
person), so a retry or another worker draws the same, and it is recorded the first time the
person qualifies: from then on the record decides, which keeps the group when an anonymous
visitor logs in (the visitor's record is carried to the customer at ``identify``; see
``campaigns.measure``). The first record also counts the person into the group (the
intention-to-treat denominator) together with a pre-assignment covariate, so the report can
narrow its interval (CUPED) from counters alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import threading
import time
from dataclasses import dataclass, field

import redis

from store import keys
from store.hot_script import HotScript
from store.redis_client import pipeline_script, reply_text

HOLDOUT = "_holdout"  # the tenant-wide holdout's id in person records and counters
TREATED, CONTROL = "treated", "control"
GROUPS = (TREATED, CONTROL)
PERSON_TTL_S = 400 * 24 * 3600  # longer than any campaign's attribution window and schedule


def person_of(visitor: str, customer_hash: str | None) -> str:
    return f"c:{customer_hash}" if customer_hash else f"v:{visitor}"


def draw(secret: bytes, campaign_id: str, person: str, control_share: float) -> str:
    """The group a person is drawn into: uniform in [0, 1) from a keyed hash, so nobody outside
    can predict or steer it, and the same person always draws the same."""
    digest = hmac.new(secret, f"{campaign_id}|{person}".encode(), hashlib.sha256).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return CONTROL if u < control_share else TREATED


def covariate(counters: dict[str, int]) -> float:
    """Behaviour before assignment, for the report's adjustment: log(1 + events so far). The
    log keeps a few heavy browsers from dominating the regression."""
    return round(math.log1p(sum(counters.values())), 4)


@dataclass
class PersonState:
    """A person's campaign record as stored (``store.keys.person_campaigns``)."""

    groups: dict[str, str] = field(default_factory=dict)  # campaign id -> group
    assigned_at: dict[str, float] = field(default_factory=dict)
    triggers: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (from, until)

    def triggered(self, campaign_id: str, now: float) -> bool:
        window = self.triggers.get(campaign_id)
        return window is not None and window[0] <= now < window[1]


def parse_person(raw: dict | list | None) -> PersonState:
    """From HGETALL's reply (a dict, or the flat list a script returns)."""
    if not raw:
        return PersonState()
    if isinstance(raw, list):
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    state = PersonState()
    for k, v in raw.items():
        name, value = reply_text(k), reply_text(v)
        cid, _, part = name.partition(":")
        if not part:
            group, _, rest = value.partition("|")
            at = rest.partition("|")[0]
            state.groups[cid] = group
            state.assigned_at[cid] = float(at or 0)
        elif part == "trig":
            start, _, until = value.partition("|")
            state.triggers[cid] = (float(start), float(until or 0))
    return state


# Records each new assignment (HSETNX: the first one wins, also against a concurrent request)
# and counts it with its covariate; counts each exposure of the person's actual group. One call
# for every campaign a request touched. KEYS[1]: the person's record; KEYS[1 + i]: campaign i's
# counters. ARGV: now, ttl, covariate, then per campaign: id, drawn group, exposed (0/1), the
# offer's score decile ('' when unscored).
_ASSIGN = """
local now, ttl, x = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS - 1 do
  local b = 3 + (i - 1) * 4
  local cid, drawn, exposed, decile = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local counters = KEYS[1 + i]
  local group = drawn
  local rec = drawn .. '|' .. now .. '|' .. ARGV[3] .. '|' .. decile
  if redis.call('HSETNX', KEYS[1], cid, rec) == 1 then
    redis.call('HINCRBY', counters, drawn .. ':people', 1)
    redis.call('HINCRBYFLOAT', counters, drawn .. ':x_sum', x)
    redis.call('HINCRBYFLOAT', counters, drawn .. ':x_sq_sum', x * x)
  else
    local stored = redis.call('HGET', KEYS[1], cid)
    group = string.match(stored, '^([^|]*)')
  end
  if exposed == '1' then redis.call('HINCRBY', counters, group .. ':exposures', 1) end
  out[i] = group
end
redis.call('EXPIRE', KEYS[1], ttl)
return out
"""


@dataclass
class Touch:
    """A campaign a request touched: its drawn group, and whether it was (or, for the control
    group, would have been) shown."""

    campaign_id: str
    drawn: str
    exposed: bool
    decile: int | None = None


class Assigner:
    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._script: HotScript | None = None

    def record(
        self,
        r: redis.Redis,
        tenant: str,
        person: str,
        touches: list[Touch],
        x: float,
        now: float,
    ) -> dict[str, str]:
        """Record assignments and exposures; returns each campaign's actual group (an earlier
        record wins over this draw)."""
        if not touches:
            return {}
        if self._script is None or self._client is not r:
            self._client, self._script = r, HotScript(r, _ASSIGN)
        reply = self._script(
            [
                keys.person_campaigns(tenant, person),
                *(keys.campaign_counters(tenant, t.campaign_id) for t in touches),
            ],
            [
                repr(now), PERSON_TTL_S, repr(x),
                *(
                    v
                    for t in touches
                    for v in (t.campaign_id, t.drawn, int(t.exposed), t.decile or "")
                ),
            ],
        )  # fmt: skip
        return {t.campaign_id: reply_text(g) for t, g in zip(touches, reply, strict=True)}


@dataclass(frozen=True)
class Listed:
    """A person put on a campaign's contact list: their drawn group, pre-assignment covariate
    and score decile."""

    person: str
    drawn: str
    x: float
    decile: int | None = None


LIST_PIPELINE = 2000  # script calls per round trip when a contact list is recorded


def record_listed(
    r: redis.Redis, tenant: str, campaign_id: str, listed: list[Listed], now: float
) -> list[str]:
    """Record the people of a contact list as serving records a request's people (the same
    script: the first record wins and counts the person, and each listing is an exposure,
    the control's being the contact it was held back from), pipelined; returns each person's
    actual group, so a person served the campaign earlier keeps theirs."""
    script = r.register_script(_ASSIGN)
    counters = keys.campaign_counters(tenant, campaign_id)
    groups: list[str] = []
    for start in range(0, len(listed), LIST_PIPELINE):
        pipe = r.pipeline(transaction=False)
        for p in listed[start : start + LIST_PIPELINE]:
            pipeline_script(
                pipe,
                script,
                [keys.person_campaigns(tenant, p.person), counters],
                [repr(now), PERSON_TTL_S, repr(p.x), campaign_id, p.drawn, 1, p.decile or ""],
            )
        groups += [reply_text(reply[0]) for reply in pipe.execute()]
    return groups


def read_person(r: redis.Redis, tenant: str, person: str) -> PersonState:
    return parse_person(r.hgetall(keys.person_campaigns(tenant, person)))


class ExposureCounts:
    """Exposures of people already assigned, counted in this process and added to the
    campaigns' counters about once a second. Exposures are descriptive (the report's uplift
    uses people and conversions); a worker that dies loses at most its last second of them."""

    FLUSH_EVERY_S = 1.0

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._flusher: tuple[int, threading.Thread] | None = None

    def add(self, r: redis.Redis, tenant: str, campaign_id: str, group: str) -> None:
        key = (tenant, campaign_id, group)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
        # Requests flush as they pass; a thread of this process flushes when they stop, so a
        # report read after the traffic sees every exposure within a second or two.
        if self._flusher is None or self._flusher[0] != os.getpid():
            thread = threading.Thread(
                target=self._flush_forever, args=(r,), name="offerwise-exposures", daemon=True
            )
            self._flusher = (os.getpid(), thread)
            thread.start()

    def _flush_forever(self, r: redis.Redis) -> None:
        while True:
            time.sleep(self.FLUSH_EVERY_S)
            with contextlib.suppress(redis.RedisError):  # kept for the next round
                self.flush_if_due(r)

    def flush_if_due(self, r: redis.Redis, now: float | None = None, force: bool = False) -> None:
        if not self._counts or (
            not force and time.monotonic() - self._flushed < self.FLUSH_EVERY_S
        ):
            return
        with self._lock:
            counts, self._counts = self._counts, {}
            self._flushed = time.monotonic()
        pipe = r.pipeline(transaction=False)
        for (tenant, cid, group), n in counts.items():
            pipe.hincrby(keys.campaign_counters(tenant, cid), f"{group}:exposures", n)
        try:
            pipe.execute()
        except redis.RedisError:
            with self._lock:  # kept for the next flush: the store may be back by then
                for key, n in counts.items():
                    self._counts[key] = self._counts.get(key, 0) + n
            raise
