"""HTTP benchmark: the real API under gunicorn, loaded with wrk, next to the framework floor.

In one run it starts its own redis-server on a free port, creates a tenant (rate limit out of
the way), loads a catalog and seeds popularity and visitor profiles with the traffic simulator;
then it starts two gunicorn servers with the same configuration (``app.server.gunicorn_options``):
the real app and a trivial Flask app (``bench/floor_app.py``), and loads each with wrk on
127.0.0.1. Scenarios:

- ``floor``: GET a route returning a small JSON object (what Flask + gunicorn cost by themselves);
- ``collect``: POST /v1/collect, batches of 5 events, new event ids per request so dedupe never
  short-circuits, half ``text/plain`` (sendBeacon) and half ``application/json``;
- ``recommend``: GET /v1/recommend?n=3 for many visitors, half with live profiles.

With ``--campaigns N`` two more scenarios run beside those, on a second tenant seeded alike
that has N live web campaigns (``campaign_specs``: the first reaches everyone, so nearly every
offer request applies it; the others are narrower), each right after its plain twin:

- ``collect+campaigns``: the same batches (views and add-to-cart: one of the campaigns watches
  a cart product, so its add-to-carts open trigger windows);
- ``recommend+campaigns``: the same requests; the treated see the broad campaign's offer first.

Each scenario runs twice: "max" (32 connections as fast as they go: the throughput) and
"paced" (the target throughput, 50 % of the floor's requests/s, offered evenly over the same 32
connections: the latency users would see at that load). With closed-loop connections the mean
latency of a saturated run is connections / throughput (Little's law), so a saturated p99 says
more about the queue than about the endpoint; the p99 target is judged on the paced run.

It prints requests/s, p50/p99 latency, non-2xx responses, CPU time per request of the app workers
and of Redis, and the ratio of each endpoint's requests/s to the floor's (each round against the
same round's floor, median over rounds), with PASS/FAIL against
the targets (>= 50 % of the floor, p99 < 25 ms at 32 connections). After each collect run it
checks that the events really landed in the tenant's stream. Results also go to
``bench/results/http.json`` and a Markdown table for the README.

    .venv/bin/python bench/bench_http.py [--duration 15] [--warmup 3] [--rounds 1]

Needs ``wrk`` (Debian package ``wrk``) and a redis-server (see store.embedded.find_redis_server).
Exit status: 0 when the run was valid, 2 when it was not (errors, non-2xx, events missing),
1 with ``--strict`` when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.child_processes import die_with_parent, free_port  # noqa: E402 (needs ROOT on the path)

WRK_DIR = ROOT / "bench" / "wrk"
DEFAULT_OUT = ROOT / "bench" / "results" / "http.json"
TENANT = "bench"
SIM_SEED = 7
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
SCENARIOS = ("floor", "collect", "recommend")
CAMPAIGN_SCENARIOS = ("collect+campaigns", "recommend+campaigns")
ALL_SCENARIOS = SCENARIOS + CAMPAIGN_SCENARIOS
CAMPAIGN_TENANT = "bench-campaigns"
EVENTS_PER_BATCH = 5  # fixed by bench/wrk/collect.lua
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """The benchmark cannot run or its run is not valid; the message says why."""


# -- processes ---------------------------------------------------------------------------------


class Processes:
    """Every long-lived child of the benchmark, stopped (whole process group) on the way out."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(
        self, name: str, args: list[str], env: dict | None = None, log: Path | None = None
    ) -> subprocess.Popen:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - kept open for the child
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        if log:
            out.close()
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs.clear()


def _log_tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def start_redis(procs: Processes, workdir: Path, tcp: bool = False):
    """A fresh redis-server configured as the embedded one (store.embedded.persistence_args:
    append-only file, fsync every second) and, unless ``tcp``, on a Unix socket, which is how
    `offerwise serve` reaches it."""
    import redis

    from store.embedded import find_redis_server, persistence_args

    log = workdir / "redis.log"
    common = [find_redis_server(), "--dir", str(workdir), *persistence_args()]
    if tcp:
        port = free_port()
        proc = procs.start("redis", [*common, "--bind", HOST, "--port", str(port)], log=log)
        url, client = f"redis://{HOST}:{port}/0", redis.Redis(host=HOST, port=port)
    else:
        sock = workdir / "redis.sock"
        proc = procs.start(
            "redis", [*common, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"],
            log=log,
        )  # fmt: skip
        url, client = f"unix://{sock}", redis.Redis(unix_socket_path=str(sock))
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return url, client, proc
        except (redis.ConnectionError, FileNotFoundError) as err:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"redis-server did not start: {err}\n{_log_tail(log)}") from err
            time.sleep(0.05)


def start_gunicorn(
    procs: Processes, kind: str, workdir: Path, workers: int, threads: int, env: dict
) -> tuple[str, subprocess.Popen]:
    """gunicorn in its own process (it forks workers), via this script's hidden --serve mode."""
    port = free_port()
    metrics_dir = workdir / f"metrics-{kind}"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    child_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    log = workdir / f"gunicorn-{kind}.log"
    proc = procs.start(
        f"gunicorn-{kind}",
        [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port),
         "--workers", str(workers), "--threads", str(threads)],
        env=child_env,
        log=log,
    )  # fmt: skip
    base = f"http://{HOST}:{port}"
    probe = base + ("/readyz" if kind == "real" else "/floor")
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=2) as resp:
                if resp.status == 200:
                    return base, proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"gunicorn ({kind}) did not become ready at {probe}\n{_log_tail(log)}")
        time.sleep(0.1)


def serve(kind: str, port: int, workers: int, threads: int) -> None:
    """The hidden --serve mode: one gunicorn with THE service configuration, app or floor."""
    from app.server import GunicornApp, gunicorn_options

    def factory():
        if kind == "real":
            from app import create_app

            return create_app()
        from bench.floor_app import create_app as create_floor

        return create_floor()

    GunicornApp(gunicorn_options(HOST, port, workers, threads), factory).run()


def cpu_seconds(proc: subprocess.Popen | None) -> float:
    """User + system CPU of a process and all its descendants (gunicorn master + workers)."""
    import psutil

    if proc is None or proc.poll() is not None:
        return 0.0
    total = 0.0
    try:
        parent = psutil.Process(proc.pid)
        for p in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
    except psutil.NoSuchProcess:
        pass
    return total


def redis_cpu_seconds(procs) -> float:
    """CPU of the store's server processes: one redis-server, or every node of a cluster
    (masters and replicas: replication is part of what a write costs)."""
    if isinstance(procs, subprocess.Popen):
        return cpu_seconds(procs)
    return sum(cpu_seconds(p) for p in procs)


def every_node(r) -> dict:
    """Keyword arguments that send a server command to every node of a cluster client (redis-py
    sends INFO, CONFIG RESETSTAT... to one node by default); none for one server's client."""
    from store.redis_client import is_cluster

    return {"target_nodes": "all"} if is_cluster(r) else {}


def children_cpu_seconds() -> float:
    """CPU of reaped children: around one wrk run this is wrk's own CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- data ----------------------------------------------------------------------------------------


def make_products(count: int) -> list[dict]:
    from clickstream.catalog import validate_rows

    categories = [f"cat-{c:02d}" for c in range(max(1, min(20, count // 10)))]
    rows = [
        {
            "product_id": f"bp-{i:04d}",
            "name": f"Bench product {i}",
            "category": categories[i % len(categories)],
            "price": f"{10 + (i * 37) % 490}.00",
            "margin": f"{3 + (i * 11) % 90}.00",
            "url": f"https://shop.example/p/bp-{i:04d}",
            "active": "true",
        }
        for i in range(count)
    ]
    report = validate_rows(rows)
    if report.errors:
        raise BenchError(f"generated catalog is invalid: {report.errors[:3]}")
    return report.products


def seed(r, products: int, visitors: int, name: str = TENANT) -> dict:
    """Tenant, catalog, and simulated traffic through the real ingest path."""
    from clickstream.catalog import replace_catalog
    from clickstream.ingest import Ingestor
    from clickstream.simulator import simulate
    from store.tenants import create_tenant, get_tenant

    t0 = time.perf_counter()
    created = create_tenant(r, name, rate_limit=1_000_000_000)
    tenant = get_tenant(r, name)
    assert tenant is not None
    catalog = make_products(products)
    replace_catalog(r, name, catalog)
    ingestor = Ingestor(r)
    events = 0
    for visitor, batch in simulate(catalog, visitors, seed=SIM_SEED):
        events += len(ingestor.ingest(tenant, visitor, batch).accepted)
    return {
        "site_key": created["site_key"],
        "product_ids": [p["product_id"] for p in catalog],
        "sim_prefix": f"sim-{SIM_SEED}-",
        "sim_visitors": visitors,
        "seeded_events": events,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def campaign_specs(count: int, product_ids: list[str]) -> list[dict]:
    """``count`` live web campaigns: one for everyone (control share 10%, highest priority),
    one for identified visitors only (none here: its audience test runs and fails), one on a
    cart-abandon trigger; more repeat the narrow kinds."""
    pick = product_ids[len(product_ids) // 2 :]  # offers away from the popular head
    kinds: list[dict] = [
        {"audience": {}, "priority": 10},
        {"audience": {"visitors": "identified"}, "priority": 5},
        {
            "audience": {
                "trigger": {"on": "cart_abandon", "product_id": product_ids[0], "minutes": 30}
            },
            "priority": 1,
        },
    ]
    return [
        {
            "name": f"bench campaign {i}",
            "offer": {"product_id": pick[i % len(pick)]},
            "control_share": 0.1,
            "cost_per_contact": 0.05,
            **kinds[0 if i == 0 else 1 + (i - 1) % 2],
        }
        for i in range(count)
    ]


def seed_campaigns(r, name: str, count: int, product_ids: list[str]) -> None:
    from campaigns.definitions import TenantFacts, create_campaign
    from clickstream.catalog import load_catalog

    facts = TenantFacts(load_catalog(r, name)[1], None, None, None)
    for spec in campaign_specs(count, product_ids):
        create_campaign(r, name, spec, facts)


def stream_length(r, tenant: str = TENANT) -> int:
    from store import keys

    return int(r.xlen(keys.event_stream(tenant)))


def settled_stream_length(
    r, tenant: str = TENANT, quiet_s: float = 0.3, limit_s: float = 5.0
) -> int:
    """The stream length once requests still in flight when wrk stopped have landed."""
    deadline = time.monotonic() + limit_s
    last = stream_length(r, tenant)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = stream_length(r, tenant)
        if now == last:
            return now
        last = now
    return last


# -- wrk -----------------------------------------------------------------------------------------


@dataclass
class Load:
    connections: int
    threads: int
    timeout_s: int = 10


@dataclass
class Run:
    scenario: str
    mode: str  # "max": as fast as 32 connections go; "paced": a fixed offered rate
    round: int
    offered_rps: float | None
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    non_2xx: int
    socket_errors: dict[str, int]
    extra: dict[str, float]
    app_cpu_us_per_req: float
    redis_cpu_us_per_req: float
    wrk_cpu_us_per_req: float
    check: dict = field(default_factory=dict)
    # Redis's own execution time per command type during the run (INFO commandstats).
    redis_commands: dict = field(default_factory=dict)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise BenchError(
            "wrk not found on PATH: install it (Debian/Ubuntu: `apt-get install -y wrk`, "
            "macOS: `brew install wrk`); this script installs nothing itself"
        )
    return found


def run_wrk(
    base_url: str,
    script: str,
    script_args: list[str],
    seconds: float,
    load: Load,
    rate: float | None = None,
) -> tuple[dict, float]:
    """One wrk run; returns the JSON its Lua done() printed and wrk's own CPU seconds.

    ``rate`` (requests/s in total) paces the run through report.lua's delay(); None saturates.
    """
    args = [
        wrk_binary(), f"-t{load.threads}", f"-c{load.connections}", f"-d{max(1, round(seconds))}s",
        f"--timeout={load.timeout_s}s", "--latency", "-s", str(WRK_DIR / script), base_url, "--", *script_args,
    ]  # fmt: skip
    env = {**os.environ, "WRK_THREAD_RATE": f"{rate / load.threads:.3f}" if rate else "0"}
    cpu0 = children_cpu_seconds()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, env=env)
    cpu = children_cpu_seconds() - cpu0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (exit {proc.returncode}) for {script}:\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
        )
    return json.loads(line.removeprefix("WRK_JSON ")), cpu


def to_run(
    scenario: str,
    mode: str,
    rnd: int,
    rate: float | None,
    raw: dict,
    cpu: tuple[float, float, float],
) -> Run:
    app_cpu, redis_cpu, wrk_cpu = cpu
    seconds = raw["duration_us"] / 1e6
    requests = int(raw["requests"])
    statuses = {str(k): int(v) for k, v in sorted(raw["statuses"].items())}
    lat = raw["latency_us"]
    per_req = 1e6 / requests if requests else 0.0
    return Run(
        scenario=scenario,
        mode=mode,
        round=rnd,
        offered_rps=round(rate, 1) if rate else None,
        requests=requests,
        seconds=round(seconds, 3),
        rps=round(requests / seconds, 1) if seconds else 0.0,
        p50_ms=round(lat["p50"] / 1000, 2),
        p90_ms=round(lat["p90"] / 1000, 2),
        p99_ms=round(lat["p99"] / 1000, 2),
        max_ms=round(lat["max"] / 1000, 2),
        statuses=statuses,
        non_2xx=sum(n for s, n in statuses.items() if not s.startswith("2")),
        socket_errors={k: int(v) for k, v in raw["errors"].items() if k != "status" and v},
        extra=dict(raw.get("extra", {})),
        app_cpu_us_per_req=round(app_cpu * per_req, 1),
        redis_cpu_us_per_req=round(redis_cpu * per_req, 1),
        wrk_cpu_us_per_req=round(wrk_cpu * per_req, 1),
    )


# -- the benchmark -------------------------------------------------------------------------------


@dataclass
class Target:
    url: str
    server: subprocess.Popen
    script: str
    args: list[str]
    kind: str = ""  # floor, collect or recommend: what the run checks
    tenant: str = TENANT


@dataclass
class Context:
    r: object  # redis.Redis of the benchmark's server, or a RedisCluster
    redis_proc: subprocess.Popen | list[subprocess.Popen]  # a cluster's: every node
    load: Load
    duration: float
    warmup: float


def measure(ctx: Context, scenario: str, target: Target, rnd: int, rate: float | None) -> Run:
    """Warm up (saturated runs only), then one measured wrk run with CPU accounting."""
    nonce = f"r{rnd}{'p' if rate else 'm'}{int(time.time() * 1000) % 10**8}"
    if ctx.warmup > 0 and rate is None:
        warm = [a.replace("{nonce}", "w" + nonce) for a in target.args]
        run_wrk(target.url, target.script, warm, ctx.warmup, ctx.load)
    args = [a.replace("{nonce}", nonce) for a in target.args]
    before = settled_stream_length(ctx.r, target.tenant) if target.kind == "collect" else 0
    broad = broad_exposures(ctx.r) if target.tenant == CAMPAIGN_TENANT else 0
    ctx.r.config_resetstat(**every_node(ctx.r))
    app0, redis0 = cpu_seconds(target.server), redis_cpu_seconds(ctx.redis_proc)
    raw, wrk_cpu = run_wrk(target.url, target.script, args, ctx.duration, ctx.load, rate)
    cpu = (cpu_seconds(target.server) - app0, redis_cpu_seconds(ctx.redis_proc) - redis0, wrk_cpu)
    run = to_run(scenario, "paced" if rate else "max", rnd, rate, raw, cpu)
    run.redis_commands = redis_command_stats(ctx.r, run.requests)
    if target.kind == "collect":
        added = settled_stream_length(ctx.r, target.tenant) - before
        run.check = collect_check(run, added, ctx.load)
    elif target.kind == "recommend":
        short = int(run.extra.get("short", 0))
        run.check = {"short_answers": short, "ok": short == 0}
        if target.tenant == CAMPAIGN_TENANT:
            run.check.update(campaign_check(run, broad_exposures(ctx.r) - broad))
    return run


def broad_exposures(r) -> int:
    """Offers the broad campaign (every person not in the holdout) touched, both groups."""
    from campaigns.definitions import get_campaign
    from campaigns.report import read_counters

    campaign = get_campaign(r, CAMPAIGN_TENANT, campaign_specs(1, ["-"])[0]["name"])
    counters = read_counters(r, CAMPAIGN_TENANT, campaign.id)
    return int(counters.get("treated:exposures", 0) + counters.get("control:exposures", 0))


def campaign_check(run: Run, exposures: int) -> dict:
    """Did the campaigns apply? The broad one touches every request but the tenant-wide
    holdout's (5%): well over half, or the scenario measured nothing of campaigns."""
    share = exposures / run.requests if run.requests else 0.0
    return {"broad_campaign_share": round(share, 3), "ok": run.check["ok"] and share > 0.5}


def redis_command_stats(r, requests: int, top: int = 8) -> dict:
    """The commands Redis spent most time in: calls and microseconds per HTTP request."""
    stats = r.info("commandstats", **every_node(r))
    if every_node(r):  # one dict per node: summed over the cluster
        merged: dict[str, dict] = {}
        for node_stats in stats.values():
            for name, v in node_stats.items():
                m = merged.setdefault(name, {"calls": 0, "usec": 0})
                m["calls"] += v.get("calls", 0)
                m["usec"] += v.get("usec", 0)
        for m in merged.values():
            m["usec_per_call"] = round(m["usec"] / m["calls"], 2) if m["calls"] else None
        stats = merged
    rows = sorted(stats.items(), key=lambda kv: kv[1].get("usec", 0), reverse=True)[:top]
    per = max(requests, 1)
    return {
        name.removeprefix("cmdstat_"): {
            "calls_per_req": round(v.get("calls", 0) / per, 2),
            "usec_per_req": round(v.get("usec", 0) / per, 1),
            "usec_per_call": v.get("usec_per_call"),
        }
        for name, v in rows
    }


def collect_check(run: Run, added: int, load: Load) -> dict:
    """Did the events land? Stream growth vs 200 responses x 5 and vs the accepted counts."""
    ok_responses = run.statuses.get("200", 0)
    expected = ok_responses * EVENTS_PER_BATCH
    accepted = int(run.extra.get("accepted", 0))
    duplicates = int(run.extra.get("duplicates", 0))
    # wrk stops with up to one request per connection in flight: the server may store those.
    slack = load.connections * EVENTS_PER_BATCH
    ok = added > 0 and accepted == expected and 0 <= added - expected <= slack and duplicates == 0
    return {
        "stream_added": added,
        "expected_200x5": expected,
        "accepted_reported": accepted,
        "duplicates_reported": duplicates,
        "difference": added - expected,
        "ok": bool(ok),
    }


def _median(values) -> float:
    return statistics.median(list(values))


def aggregate(runs: list[Run]) -> dict[str, dict]:
    """Rows keyed "scenario" (saturated) and "scenario@paced"; medians over rounds."""
    out: dict[str, dict] = {}
    for mode in ("max", "paced"):
        for scenario in ALL_SCENARIOS:
            mine = [r for r in runs if r.scenario == scenario and r.mode == mode]
            if not mine:
                continue
            out[scenario if mode == "max" else f"{scenario}@paced"] = {
                "scenario": scenario,
                "mode": mode,
                "offered_rps": _median(r.offered_rps for r in mine) if mode == "paced" else None,
                "rps": round(_median(r.rps for r in mine), 1),
                "p50_ms": round(_median(r.p50_ms for r in mine), 2),
                "p90_ms": round(_median(r.p90_ms for r in mine), 2),
                "p99_ms": round(_median(r.p99_ms for r in mine), 2),
                "non_2xx": sum(r.non_2xx for r in mine),
                "socket_errors": sum(sum(r.socket_errors.values()) for r in mine),
                "requests": sum(r.requests for r in mine),
                "app_cpu_us_per_req": round(_median(r.app_cpu_us_per_req for r in mine), 1),
                "redis_cpu_us_per_req": round(_median(r.redis_cpu_us_per_req for r in mine), 1),
                "wrk_cpu_us_per_req": round(_median(r.wrk_cpu_us_per_req for r in mine), 1),
                "checks_ok": all(r.check.get("ok", True) for r in mine),
            }
            row = out[scenario if mode == "max" else f"{scenario}@paced"]
            row["cpu_us_per_req"] = round(
                row["app_cpu_us_per_req"] + row["redis_cpu_us_per_req"] + row["wrk_cpu_us_per_req"],
                1,
            )
    # Each round's endpoints are divided by that round's floor: this VM's speed drifts by 25 %
    # between runs a minute apart (measured: the floor at 3812 to 5001 req/s in one session),
    # and a ratio of medians would mix rounds taken at different speeds.
    floor_by_round = {r.round: r.rps for r in runs if r.scenario == "floor" and r.mode == "max"}
    for row in out.values():
        mine = [
            r.rps / floor_by_round[r.round]
            for r in runs
            if r.scenario == row["scenario"]
            and r.mode == row["mode"]
            and floor_by_round.get(r.round)
        ]
        row["paired_ratio"] = round(_median(mine), 3) if mine else None
    judge(out)
    return out


def judge(rows: dict[str, dict]) -> None:
    """Adds ratio and verdict. Throughput: saturated req/s vs the floor's. Latency: the p99 of
    the paced run (the target throughput offered over 32 connections) when there is one, else
    of the saturated run."""
    floor = rows.get("floor", {}).get("rps")
    floor_cpu = rows.get("floor", {}).get("cpu_us_per_req")
    for key, row in rows.items():
        row["ratio"] = row.get("paired_ratio") or (round(row["rps"] / floor, 3) if floor else None)
        # What the ratio would be if the machine were CPU-bound and ours alone: floor CPU per
        # request (app + Redis + wrk) over this row's. Less sensitive to other load than req/s.
        row["cpu_cost_ratio"] = (
            round(floor_cpu / row["cpu_us_per_req"], 3)
            if floor_cpu and row["cpu_us_per_req"]
            else None
        )
        if row["scenario"] == "floor" or row["mode"] == "paced":
            row["verdict"] = "-"
            continue
        misses = []
        if row["ratio"] is None or row["ratio"] < TARGET_RATIO:
            misses.append(f"req/s < {TARGET_RATIO:.0%} of floor")
        paced = rows.get(f"{key}@paced")
        latency_row = paced or row
        if paced and paced["offered_rps"] and paced["rps"] < 0.95 * paced["offered_rps"]:
            misses.append(f"cannot sustain {paced['offered_rps']:.0f} req/s")
        if latency_row["p99_ms"] >= TARGET_P99_MS:
            where = f" at {paced['offered_rps']:.0f} req/s" if paced else " saturated"
            misses.append(f"p99 >= {TARGET_P99_MS:g} ms{where}")
        row["p99_judged_ms"] = latency_row["p99_ms"]
        row["misses"] = misses
        row["verdict"] = "FAIL" if misses else "PASS"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _label(key: str, row: dict) -> str:
    return f"{row['scenario']} @{row['offered_rps']:.0f}/s" if row["mode"] == "paced" else key


def text_table(rows: dict[str, dict]) -> str:
    head = (
        f"{'scenario':<27} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'/floor':>6} "
        f"{'app us/req':>10} {'redis us/req':>12} {'cpu ratio':>9}  verdict"
    )
    lines = [head, "-" * len(head)]
    for key, row in rows.items():
        verdict = row["verdict"] + (f" ({'; '.join(row['misses'])})" if row.get("misses") else "")
        ratio = _fmt_ratio(row["ratio"]) if row["mode"] == "max" else ""
        lines.append(
            f"{_label(key, row):<27} {row['rps']:>8.1f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['non_2xx']:>7d} {ratio:>6} {row['app_cpu_us_per_req']:>10.0f} "
            f"{row['redis_cpu_us_per_req']:>12.0f} {_fmt_ratio(row['cpu_cost_ratio']):>9}  {verdict}"
        )
    return "\n".join(lines)


NAMES = {
    "floor": "floor (trivial Flask route)",
    "collect": "`POST /v1/collect` (5 events)",
    "recommend": "`GET /v1/recommend` (n=3)",
    "collect+campaigns": "`POST /v1/collect` (5 events), campaigns live",
    "recommend+campaigns": "`GET /v1/recommend` (n=3), campaigns live",
}


def markdown_table(rows: dict[str, dict], meta: dict) -> str:
    rounds = f", median of {meta['rounds']} rounds" if meta["rounds"] > 1 else ""
    lines = [
        f"{meta['cpus']} CPUs; gunicorn {meta['workers']} workers x {meta['threads']} threads "
        f"(gthread, the `offerwise serve` configuration); wrk {meta['connections']} connections, "
        f"{meta['wrk_threads']} threads, {meta['duration_s']:g} s per run{rounds}; Redis over "
        f"{meta.get('redis', 'tcp')}. "
        f'"max": as fast as the connections go; "paced": the target throughput '
        f"({TARGET_RATIO:.0%} of the floor) offered evenly over the same connections.",
        "",
        "| scenario | load | req/s | p50 ms | p99 ms | non-2xx | vs floor | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows.values():
        load = "max" if row["mode"] == "max" else f"paced {row['offered_rps']:.0f}/s"
        verdict = row["verdict"] + (f" ({'; '.join(row['misses'])})" if row.get("misses") else "")
        ratio = _fmt_ratio(row["ratio"]) if row["mode"] == "max" else ""
        lines.append(
            f"| {NAMES[row['scenario']]} | {load} | {row['rps']:.0f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['non_2xx']} | {ratio} | {verdict} |"
        )
    return "\n".join(lines)


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from app.server import default_workers

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = p.add_argument
    add("--duration", type=float, default=15, help="seconds per measured run (default 15)")
    add(
        "--warmup",
        type=float,
        default=3,
        help="unmeasured seconds before each saturated run (default 3; 0: none)",
    )
    add("--rounds", type=int, default=1, help="repeat every run this many times, report medians")
    add(
        "--no-paced",
        action="store_true",
        help="skip the paced runs (latency at the target throughput)",
    )
    add("--connections", type=int, default=32)
    add("--wrk-threads", type=int, default=2)
    add(
        "--workers",
        type=int,
        default=default_workers(),
        help="gunicorn workers (default: as `offerwise serve`)",
    )
    add(
        "--threads",
        type=int,
        default=4,
        help="threads per gunicorn worker (default: as `offerwise serve`)",
    )
    add("--products", type=int, default=200, help="catalog size (default 200)")
    add(
        "--visitors",
        type=int,
        default=3000,
        help="simulated visitors seeding popularity and profiles",
    )
    add(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    add(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="JSON results (default bench/results/http.json)",
    )
    add("--strict", action="store_true", help="exit 1 when a target is missed")
    add("--keep-logs", action="store_true", help="keep the temporary dir with the server logs")
    add(
        "--paced-rate",
        type=float,
        help="req/s offered in the paced runs (default: the target, 50%% of the floor's req/s): "
        "p99 at a rate the endpoints sustain",
    )
    add(
        "--redis-tcp",
        action="store_true",
        help="reach Redis over TCP on 127.0.0.1 (default: a Unix socket, as the embedded Redis)",
    )
    add(
        "--campaigns",
        type=int,
        default=0,
        help="also run collect and recommend against a tenant with this many live web campaigns "
        "(rows collect+campaigns, recommend+campaigns; default 0: none)",
    )
    add("--serve", choices=("real", "floor"), help=argparse.SUPPRESS)
    add("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return args
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown or not chosen:
        p.error(
            f"--scenarios: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}"
        )
    args.scenarios = [s for s in SCENARIOS if s in chosen]
    if args.campaigns < 0:
        p.error("--campaigns: must be 0 or more")
    if args.campaigns:
        # Each twin right after its plain run: the pair sees the same machine speed.
        args.scenarios = [
            x for s in args.scenarios for x in ((s, f"{s}+campaigns") if s != "floor" else (s,))
        ]
    if "floor" not in args.scenarios:
        print(
            "note: without the floor scenario there is no ratio and no paced run", file=sys.stderr
        )
    for name in (
        "duration",
        "connections",
        "wrk_threads",
        "workers",
        "threads",
        "products",
        "visitors",
        "rounds",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: must be at least 1")
    if args.warmup < 0:
        p.error("--warmup: must be 0 or more")
    return args


def start_targets(
    procs: Processes,
    args: argparse.Namespace,
    workdir: Path,
    redis_url: str,
    data: dict,
    campaign_data: dict | None = None,
) -> dict[str, Target]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "OFFERWISE_DATA_DIR": str(workdir / "var"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("OFFERWISE_ACCESS_LOG", None)  # the service default: no per-request access log
    targets: dict[str, Target] = {}
    if "floor" in args.scenarios:
        url, proc = start_gunicorn(procs, "floor", workdir, args.workers, args.threads, env)
        targets["floor"] = Target(url, proc, "floor.lua", ["/floor"])
    if {"collect", "recommend"} & set(args.scenarios):
        url, proc = start_gunicorn(procs, "real", workdir, args.workers, args.threads, env)
        products = ",".join(data["product_ids"])
        for suffix, seeded, tenant in (("", data, TENANT), ("+campaigns", campaign_data, None)):
            if seeded is None:
                continue
            tenant = tenant or CAMPAIGN_TENANT
            targets["collect" + suffix] = Target(
                url, proc, "collect.lua", [seeded["site_key"], "{nonce}", products],
                kind="collect", tenant=tenant,
            )  # fmt: skip
            targets["recommend" + suffix] = Target(
                url, proc, "recommend.lua",
                [seeded["site_key"], "{nonce}", seeded["sim_prefix"],
                 str(seeded["sim_visitors"]), "3"],
                kind="recommend", tenant=tenant,
            )  # fmt: skip
    return targets


def _progress(run: Run) -> None:
    load = f"@{run.offered_rps:.0f}/s" if run.offered_rps else "max"
    check = f" check={run.check}" if run.check else ""
    print(
        f"  round {run.round} {run.scenario:<19} {load:<9} {run.rps:>8.1f} req/s  p50 {run.p50_ms:.2f} ms"
        f"  p99 {run.p99_ms:.2f} ms  statuses {run.statuses}{check}",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    wrk_binary()  # fail before starting anything
    load = Load(connections=args.connections, threads=args.wrk_threads)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="offerwise-bench-"))
    runs: list[Run] = []
    try:
        (workdir / "redis").mkdir()
        redis_url, r, redis_proc = start_redis(procs, workdir / "redis", tcp=args.redis_tcp)
        data = seed(r, args.products, args.visitors)
        print(
            f"seeded tenant {TENANT!r}: {args.products} products, {args.visitors} simulated visitors,"
            f" {data['seeded_events']} events in {data['seconds']} s",
            flush=True,
        )
        campaign_data = None
        if args.campaigns:
            campaign_data = seed(r, args.products, args.visitors, CAMPAIGN_TENANT)
            seed_campaigns(r, CAMPAIGN_TENANT, args.campaigns, campaign_data["product_ids"])
            print(
                f"seeded tenant {CAMPAIGN_TENANT!r} alike, with {args.campaigns} live campaigns",
                flush=True,
            )
        targets = start_targets(procs, args, workdir, redis_url, data, campaign_data)
        ctx = Context(r, redis_proc, load, args.duration, args.warmup)
        paced = not args.no_paced and ("floor" in args.scenarios or bool(args.paced_rate))
        print(
            f"servers up; {len(args.scenarios)} scenario(s){' saturated and paced' if paced else ''}"
            f" x {args.rounds} round(s), {args.duration:g} s each",
            flush=True,
        )
        for rnd in range(1, args.rounds + 1):
            for scenario in args.scenarios:
                runs.append(measure(ctx, scenario, targets[scenario], rnd, None))
                _progress(runs[-1])
            if paced:
                rate = args.paced_rate or TARGET_RATIO * next(
                    x.rps for x in runs if x.round == rnd and x.scenario == "floor"
                )
                for scenario in args.scenarios:
                    runs.append(measure(ctx, scenario, targets[scenario], rnd, rate))
                    _progress(runs[-1])
    finally:
        procs.stop_all()
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report(args, runs)


def report(args: argparse.Namespace, runs: list[Run]) -> int:
    rows = aggregate(runs)
    for scenario in CAMPAIGN_SCENARIOS:
        if scenario in rows:
            rows[scenario]["vs_plain"] = campaigns_vs_plain(runs, scenario)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "workers": args.workers,
        "threads": args.threads,
        "connections": args.connections,
        "wrk_threads": args.wrk_threads,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "redis": "tcp 127.0.0.1" if args.redis_tcp else "unix socket",
        "products": args.products,
        "visitors": args.visitors,
        "campaigns": args.campaigns,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "targets": {"ratio_to_floor": TARGET_RATIO, "p99_ms": TARGET_P99_MS},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "summary": rows, "runs": [run.__dict__ for run in runs]}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print()
    print(text_table(rows))
    print(
        "/floor: median over rounds of the run's req/s over the same round's floor;"
        " app/redis us/req: CPU time per request of the gunicorn workers / redis-server; cpu ratio:"
        " floor's CPU per request (app + Redis + wrk) over the row's, the req/s ratio a quiet"
        " CPU-bound machine would show"
    )
    print()
    print(markdown_table(rows, meta))
    print()
    for scenario in ("collect", "recommend", *CAMPAIGN_SCENARIOS):
        row = rows.get(scenario)
        if row and row["ratio"] is not None:
            print(
                f"summary {scenario}: {row['rps']:.0f} req/s = {_fmt_ratio(row['ratio'])} of the floor "
                f"(target >= {TARGET_RATIO:.0%}); p99 {row['p99_judged_ms']:.1f} ms "
                f"(target < {TARGET_P99_MS:g} ms): {row['verdict']}"
            )
    for scenario in CAMPAIGN_SCENARIOS:
        row, plain = rows.get(scenario), rows.get(scenario.removesuffix("+campaigns"))
        if row and plain:
            print(
                f"campaigns' cost, {plain['scenario']}: {row['vs_plain']:.0%} of the plain run's "
                f"req/s (median over rounds, each against the run just before it); app CPU "
                f"{row['app_cpu_us_per_req']:.0f} vs {plain['app_cpu_us_per_req']:.0f} us/req, "
                f"Redis {row['redis_cpu_us_per_req']:.0f} vs {plain['redis_cpu_us_per_req']:.0f}"
            )
    print(f"results written to {args.out}")
    problems = validity_problems(rows)
    if problems:
        print("INVALID RUN: " + "; ".join(problems), file=sys.stderr)
        return 2
    if args.strict and any(row["verdict"] == "FAIL" for row in rows.values()):
        return 1
    return 0


def campaigns_vs_plain(runs: list[Run], scenario: str) -> float:
    """The saturated run's req/s over its plain twin's, same round; median over rounds."""
    plain = scenario.removesuffix("+campaigns")
    by_round = {r.round: r.rps for r in runs if r.scenario == plain and r.mode == "max"}
    ratios = [
        r.rps / by_round[r.round]
        for r in runs
        if r.scenario == scenario and r.mode == "max" and by_round.get(r.round)
    ]
    return round(_median(ratios), 3) if ratios else float("nan")


def validity_problems(rows: dict[str, dict]) -> list[str]:
    problems = []
    for key, row in rows.items():
        if row["requests"] == 0:
            problems.append(f"{key}: no request completed")
        if row["non_2xx"]:
            problems.append(f"{key}: {row['non_2xx']} non-2xx responses")
        if row["socket_errors"]:
            problems.append(f"{key}: {row['socket_errors']} socket errors/timeouts")
        if not row["checks_ok"]:
            problems.append(f"{key}: work check failed (see runs[].check in the JSON)")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.workers, args.threads)
        return 0

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except BenchError as err:
        print(f"bench_http: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_http: interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
