"""Drift of a model version's live traffic from its training data, and its live calibration.

**Reference** (``drift.json`` beside the version's artifacts, written by models.pipeline):
per feature, the deciles of its values over the training rows (equal values merge, so a flag
gets two bins) and the share of training rows in each bin, plus one bin for missing values;
and per product the mean holdout score in each score decile.

**Live sample**: serving counts the feature vector of 1 in ``SAMPLE_EVERY`` model requests
into a per-process array of bin counts (one comparison against the padded edges, about 10 us
per sampled request: under 1 us per request on average) and adds it to a Redis hash
(``store.keys.model_drift``) at most every ``FLUSH_S`` seconds, one pipeline per process. The
sampled offers' scores are summed per score decile too, for calibration. Counts are kept apart
for identified visitors (the population the model was trained on: CRM customers) and
anonymous ones, so an anonymous majority reads as what it is rather than as drift of every
CRM feature.

**Population stability index** per feature: sum over bins of (live - train) ln(live / train),
shares floored at ``EPS`` so that an empty bin counts as rare, not infinite. 0 for identical
distributions; the customary reading: under 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a
shift worth retraining for.

**Calibration by decile**: the mean predicted score of the offers served in a decile (the
sampled ones; the training holdout's mean until samples arrive) against the observed
click-through and conversion of that decile's offers, from the counters the campaigns layer
keeps per model version and score decile (passed in: this package sits below campaigns).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import redis
from redis.commands.core import AsyncScript, Script

from store import keys
from store.artifacts.durable import atomic_write
from store.redis_client import reply_text

log = logging.getLogger("offerwise.drift")

DRIFT_FILE = "drift.json"
FORMAT = 1
QUANTILES = np.arange(1, 10) / 10.0  # deciles: up to 10 value bins
MAX_EDGES = len(QUANTILES)
MISSING = MAX_EDGES + 1  # column of the missing-value bin
BINS = MAX_EDGES + 2
REFERENCE_ROWS = 200_000  # training rows the bins are taken from (a fixed-seed sample)
SAMPLE_EVERY = 16
FLUSH_S = 10.0
SAMPLES_TTL_S = 90 * 86400  # a version's live counts outlive its serving by this much
EPS = 1e-4
MIN_SAMPLES = 200  # fewer live samples: PSI is reported but marked too few
STABLE, SHIFTED = 0.1, 0.25
KINDS = {"identified": "i", "anonymous": "a"}
DECILES = range(1, 11)


# One call adds a flush's counts (hundreds of fields): a pipeline of as many HINCRBYs cost
# 25-35 ms of client CPU per flush, on the request that happened to flush.
_FLUSH = """
for i = 2, #ARGV, 2 do
  if string.sub(ARGV[i], -10) == ':score_sum' then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""


class ServedOffer(Protocol):
    score: float
    decile: int | None


# --- reference: written at training ----------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    features: list[str]
    edges: np.ndarray  # (F, MAX_EDGES) float64, padded with +inf
    n_edges: np.ndarray  # (F,) int
    train_share: np.ndarray  # (F, BINS) float64, rows sum to 1
    rows: int
    decile_scores: dict[str, list[float | None]]  # product -> mean holdout score per decile

    @classmethod
    def from_training(
        cls,
        X: np.ndarray,
        features: Sequence[str],
        decile_scores: Mapping[str, list[float | None]] | None = None,
        *,
        rows: np.ndarray | None = None,
        seed: int = 0,
    ) -> Reference:
        """From the training rows ``rows`` of ``X`` (default all), ``REFERENCE_ROWS`` of them
        at most: bins of a 200,000-row sample differ from the full data's by noise only."""
        rows = np.arange(len(X)) if rows is None else rows
        if len(rows) > REFERENCE_ROWS:
            rows = np.sort(np.random.default_rng(seed).choice(rows, REFERENCE_ROWS, replace=False))
        X = X[rows]
        F = X.shape[1]
        edges = np.full((F, MAX_EDGES), np.inf)
        n_edges = np.zeros(F, dtype=np.int64)
        share = np.zeros((F, BINS))
        for j in range(F):
            col = np.asarray(X[:, j], dtype=np.float64)
            finite = col[~np.isnan(col)]
            e = np.unique(np.quantile(finite, QUANTILES)) if finite.size else np.zeros(0)
            edges[j, : e.size] = e
            n_edges[j] = e.size
            share[j] = np.bincount(bin_index(col, edges[j]), minlength=BINS) / max(1, len(col))
        return cls(list(features), edges, n_edges, share, len(X), dict(decile_scores or {}))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "features": self.features,
                "edges": [self.edges[j, :n].tolist() for j, n in enumerate(self.n_edges)],
                "train_share": [[round(float(v), 6) for v in row] for row in self.train_share],
                "rows": self.rows,
                "decile_scores": self.decile_scores,
            }
        )

    @classmethod
    def load(cls, folder: Path) -> Reference | None:
        """The version's reference; None for versions trained before drift was recorded."""
        try:
            data = json.loads((folder / DRIFT_FILE).read_text())
        except (OSError, ValueError):
            return None
        F = len(data["features"])
        edges = np.full((F, MAX_EDGES), np.inf)
        for j, e in enumerate(data["edges"]):
            edges[j, : len(e)] = e
        return cls(
            data["features"],
            edges,
            np.array([len(e) for e in data["edges"]], dtype=np.int64),
            np.asarray(data["train_share"], dtype=np.float64),
            int(data["rows"]),
            data.get("decile_scores", {}),
        )

    def save(self, folder: Path) -> None:
        """Into a local folder being built (a staged version); a published version's file is
        written through the store (``registry.write_version_file``)."""
        text = self.to_json()
        atomic_write(folder / DRIFT_FILE, lambda path: path.write_text(text))


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value against one feature's padded edges: the number of edges below it
    (0 .. edges), ``MISSING`` for NaN."""
    out = np.searchsorted(edges, values, side="left")
    out[np.isnan(values)] = MISSING
    return out


def decile_of(scores: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """Score decile as serving assigns it (``Bundle.decile``): 1 for scores at or above the
    top 10% cut ... 10 below the 90% one."""
    at = np.asarray([cuts[d * 10 - 1] for d in range(1, 10)])
    return 1 + (scores[:, None] < at[None, :]).sum(axis=1)


def decile_means(scores: np.ndarray, cuts: Sequence[float]) -> list[float | None]:
    if not len(cuts) or not len(scores):
        return [None] * 10
    d = decile_of(scores, cuts)
    return [round(float(scores[d == k].mean()), 6) if (d == k).any() else None for k in DECILES]


# --- live sample: serving -------------------------------------------------------------------------


class LiveSample:
    """Per-process bin counts of one version's sampled live feature vectors."""

    def __init__(
        self,
        tenant: str,
        version: str,
        reference: Reference,
        every: int | None = None,
        flush_s: float | None = None,
    ) -> None:
        self.key = keys.model_drift(tenant, version)
        self.every = SAMPLE_EVERY if every is None else every
        self.flush_s = FLUSH_S if flush_s is None else flush_s
        self._edges = reference.edges
        self._rows = np.arange(len(reference.features))
        self._row_starts = self._rows * BINS
        self._lock = threading.Lock()
        self._script: AsyncScript | Script | None = None
        self._seen = 0
        self._reset()
        self._flushed = time.monotonic()

    def _reset(self) -> None:
        F = len(self._rows)
        self._counts = {kind: np.zeros((F, BINS), dtype=np.int64) for kind in KINDS.values()}
        self._samples = dict.fromkeys(KINDS.values(), 0)
        self._offers = [0] * 11  # lists: a numpy scalar update costs ten times more
        self._score_sum = [0.0] * 11

    def observe(
        self,
        x: np.ndarray | Callable[[], np.ndarray],
        identified: bool,
        offers: Iterable[ServedOffer],
    ) -> None:
        """Count 1 in ``every`` calls; the others cost an increment and a modulo. ``x`` may be
        a function that builds the vector, called only for a counted request."""
        self._seen += 1  # unlocked: a lost increment only moves which request is sampled
        if self._seen % self.every:
            return
        if callable(x):
            x = x()
        idx = (x[:, None] > self._edges).sum(axis=1)  # count_nonzero(axis=) is slower
        idx[np.isnan(x)] = MISSING
        kind = KINDS["identified" if identified else "anonymous"]
        with self._lock:
            # Flat indices: one gather and scatter instead of a 2-D fancy index (half the time).
            self._counts[kind].ravel()[self._row_starts + idx] += 1
            self._samples[kind] += 1
            for offer in offers:
                if offer.decile:
                    self._offers[offer.decile] += 1
                    self._score_sum[offer.decile] += offer.score

    def flush_if_due(self, r: redis.Redis, now: float | None = None) -> bool:
        """When ``flush_s`` has passed, hand this process's counts to its writer thread, which
        adds them to Redis: the request that happens to flush pays for swapping two arrays,
        not for the write (10 to 30 ms for a few hundred fields on a busy host)."""
        now = time.monotonic() if now is None else now
        if now - self._flushed < self.flush_s:
            return False
        batch = self._take(now)
        if batch is None:
            return False
        _writer.submit(self._write, r, batch)
        return True

    def flush(self, r: redis.Redis) -> bool:
        """Write the counts now, on this thread."""
        batch = self._take(time.monotonic())
        return batch is not None and self._write(r, batch)

    def _take(self, now: float) -> tuple | None:
        with self._lock:
            self._flushed = now
            if not any(self._samples.values()):
                return None
            batch = (self._counts, self._samples, self._offers, self._score_sum)
            self._reset()
        return batch

    def _write(self, r: redis.Redis, batch: tuple) -> bool:
        """Never raises: a lost write loses seconds of samples."""
        counts, samples, offers, score_sum = batch
        args: list[str | int | float] = [SAMPLES_TTL_S]
        for kind, table in counts.items():
            if samples[kind]:
                args += [f"{kind}:samples", samples[kind]]
                rows, bins = np.nonzero(table)
                for j, b, n in zip(
                    rows.tolist(), bins.tolist(), table[rows, bins].tolist(), strict=True
                ):
                    args += [f"{kind}{j}:{b}", n]
        for d in DECILES:
            if offers[d]:
                args += [f"d{d}:offers", offers[d], f"d{d}:score_sum", score_sum[d]]
        try:
            if self._script is None:
                self._script = r.register_script(_FLUSH)
            self._script(keys=[self.key], args=args)
        except redis.RedisError as err:
            log.warning("drift samples of %s not stored: %s", self.key, err)
            return False
        return True


class _Writer:
    """One daemon thread per process that runs the submitted writes in order (started on
    first use, so a forked gunicorn worker starts its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue = queue.Queue()

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.Queue()
                    threading.Thread(
                        target=self._run, args=(self._queue,), name="offerwise-drift", daemon=True
                    ).start()
                    self._pid = os.getpid()
        self._queue.put((fn, args))

    @staticmethod
    def _run(jobs: queue.Queue) -> None:
        while True:
            fn, args = jobs.get()
            try:
                fn(*args)
            except Exception:  # the writer must outlive any one bad write
                log.exception("drift sample write failed")
            finally:
                jobs.task_done()

    def wait(self) -> None:
        """Until every write submitted so far is done (tests, shutdown)."""
        if self._pid == os.getpid():
            self._queue.join()


_writer = _Writer()


def wait_for_writes() -> None:
    _writer.wait()


# --- reports ------------------------------------------------------------------------------------


def psi(train_share: np.ndarray, live_counts: np.ndarray) -> float:
    """Population stability index of one feature's live bin counts against its training
    shares (both over the same bins)."""
    total = live_counts.sum()
    if total <= 0:
        return float("nan")
    live = np.maximum(live_counts / total, EPS)
    train = np.maximum(train_share, EPS)
    return float(np.sum((live - train) * np.log(live / train)))


def read_live(r: redis.Redis, tenant: str, version: str, n_features: int) -> dict:
    """The version's live counts: ``counts[kind]`` (F, BINS), ``samples[kind]``, and per
    decile the sampled offers and their score sums."""
    raw = {
        reply_text(k): reply_text(v)
        for k, v in r.hgetall(keys.model_drift(tenant, version)).items()
    }
    counts = {kind: np.zeros((n_features, BINS), dtype=np.int64) for kind in KINDS.values()}
    samples = dict.fromkeys(KINDS.values(), 0)
    offers = np.zeros(11, dtype=np.int64)
    score_sum = np.zeros(11)
    for field, value in raw.items():
        head, _, tail = field.partition(":")
        if tail == "samples" and head in samples:
            samples[head] = int(value)
        elif head[:1] in counts and head[1:].isdigit() and tail.isdigit():
            j, b = int(head[1:]), int(tail)
            if j < n_features and b < BINS:
                counts[head[:1]][j, b] = int(value)
        elif head[:1] == "d" and head[1:].isdigit() and int(head[1:]) in DECILES:
            if tail == "offers":
                offers[int(head[1:])] = int(value)
            elif tail == "score_sum":
                score_sum[int(head[1:])] = float(value)
    return {"counts": counts, "samples": samples, "offers": offers, "score_sum": score_sum}


def _status(value: float, samples: int) -> str:
    if samples < MIN_SAMPLES:
        return "too few samples"
    return "stable" if value < STABLE else "moderate" if value < SHIFTED else "shifted"


def feature_drift(reference: Reference, live: dict) -> dict:
    """PSI per feature for identified visitors and for all traffic, largest first."""
    out: dict = {
        "sample_every": SAMPLE_EVERY,
        "samples": {name: live["samples"][code] for name, code in KINDS.items()},
        "thresholds": {"stable_below": STABLE, "shifted_above": SHIFTED},
    }
    populations = {
        "identified": live["counts"]["i"],
        "all": live["counts"]["i"] + live["counts"]["a"],
    }
    for population, counts in populations.items():
        n = int(counts[0].sum()) if len(counts) else 0
        values = [
            (name, round(psi(reference.train_share[j], counts[j]), 5))
            for j, name in enumerate(reference.features)
        ]
        values = [(name, v) for name, v in values if v == v]  # NaN: nothing sampled
        values.sort(key=lambda nv: -nv[1])
        rows = [{"feature": name, "psi": v, "status": _status(v, n)} for name, v in values]
        out[population] = {
            "samples": n,
            "max_psi": values[0][1] if values else None,
            "shifted": [row["feature"] for row in rows if row["status"] == "shifted"],
            "features": rows,
        }
    return out


def calibration(
    reference: Reference | None, live: dict | None, responses: Iterable[Mapping]
) -> dict:
    """Predicted against observed response by score decile.

    ``responses``: the campaigns layer's rows per decile (``decile``, ``impressions``,
    ``clicks``, ``conversions``). Predicted is the mean score of the sampled offers served in
    that decile, or the training holdout's mean over the version's products until samples
    arrive. The error is the impression-weighted mean absolute gap, over deciles with both.
    """
    by_decile = {int(row["decile"]): row for row in responses}
    trained: dict[int, float] = {}
    if reference is not None and reference.decile_scores:
        for d in DECILES:
            vals = [
                float(m) for v in reference.decile_scores.values() if (m := v[d - 1]) is not None
            ]
            if vals:
                trained[d] = float(np.mean(vals))
    offers = live["offers"] if live is not None else np.zeros(11, dtype=np.int64)
    score_sum = live["score_sum"] if live is not None else np.zeros(11)
    rows = []
    gaps: dict[str, list[tuple[float, float]]] = {"click_through": [], "conversion_rate": []}
    for d in DECILES:
        row = by_decile.get(d, {})
        served = int(offers[d])
        predicted: float | None
        if served:
            predicted, source = float(score_sum[d]) / served, "served offers"
        elif d in trained:
            predicted, source = trained[d], "training holdout"
        else:
            predicted, source = None, None
        imp = int(row.get("impressions", 0))
        observed = {
            "click_through": row.get("clicks", 0) / imp if imp else None,
            "conversion_rate": row.get("conversions", 0) / imp if imp else None,
        }
        if not imp and predicted is None:
            continue
        for name, value in observed.items():
            if value is not None and predicted is not None:
                gaps[name].append((imp, abs(value - predicted)))
        rows.append(
            {
                "decile": d,
                "predicted": None if predicted is None else round(predicted, 6),
                "predicted_from": source,
                "offers_sampled": served,
                "impressions": imp,
                "clicks": int(row.get("clicks", 0)),
                "conversions": int(row.get("conversions", 0)),
                **{k: None if v is None else round(v, 6) for k, v in observed.items()},
            }
        )
    error = {
        name: round(sum(w * g for w, g in pairs) / sum(w for w, _ in pairs), 6) if pairs else None
        for name, pairs in gaps.items()
    }
    return {"by_decile": rows, "mean_abs_error": error}


def live_report(
    r: redis.Redis, folder: Path, tenant: str, version: str, responses: Iterable[Mapping]
) -> dict:
    """Drift and calibration of the version stored in ``folder``; ``responses`` as for
    ``calibration``."""
    reference = Reference.load(folder)
    if reference is None:
        return {
            "drift": None,
            "why": "trained before training distributions were kept: retrain to measure drift",
            "calibration": calibration(None, None, responses),
        }
    live = read_live(r, tenant, version, len(reference.features))
    return {
        "drift": feature_drift(reference, live),
        "calibration": calibration(reference, live, responses),
    }
