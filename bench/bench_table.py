"""Every HTTP and pipeline figure of the service in one command and one Markdown table.

    .venv/bin/python bench/bench_table.py [--rounds 3] [--duration 10] [--soak 600]
    make bench-table                      # the same; SOAK=60 for a shorter soak

One run, on its own Redis (Unix socket, the embedded server's persistence settings) and two
gunicorn servers with the same configuration (``app.server.gunicorn_options``: the real app and
the trivial Flask route of ``bench/floor_app.py``), loaded by wrk on 127.0.0.1:

1. **Tenants.** ``bench``: 200 products and 3,000 simulated visitors (collect's tenant, as in
   ``bench/bench_http.py``). ``bench-model``: a synthetic tenant (``models.synthetic``: CRM
   extract at real US ZIP codes, holdings, 90 days of web sessions with logins) with 20
   products, trained and promoted (``models.pipeline.train_and_register``), a few live web
   campaigns (everyone; identified visitors; a CRM filter; the top 30 % of one product's
   scores) and simulated anonymous visitors beside the identified ones.
2. **Rounds** (``--rounds``, each scenario once per round, back to back so each is divided by
   the floor measured a minute earlier on the same machine; medians over rounds):
   ``floor``, ``collect`` (5 events a batch), ``recommend, identified`` (visitors linked to a
   CRM customer: model over CRM + holdings + ZIP + web, campaigns applied), ``recommend,
   anonymous`` (half with a live profile, half new). Then each again at a fixed rate (its
   target share of that round's floor, spread over the same connections): the p99 judged.
3. **Pipeline.** Events/s into the stream (collect's accepted events), and into the Parquet
   archive (the archiver over the stream the rounds filled; bytes per archived event).
4. **Memory.** ``MEMORY USAGE`` of every key of 1,000 visitor profiles after the load (bytes
   per profile, anonymous and identified), for docs/scaling.md.
5. **Soak** (``--soak`` seconds, 600 by default; 0 skips): identified recommend and collect at
   half their measured rates together, the archiver draining the stream every second; the RSS
   of every gunicorn worker sampled every ``--soak-sample`` seconds; flat means no worker grew
   by more than ``--rss-slack-mb`` between the end of the first fifth and the end; no error.
6. **Redis Cluster**: not measured by this script yet (its row says so).

``--baseline DIR`` (a checkout of another commit, e.g. ``git archive main | tar -x -C DIR``
with its snippet built) also starts that tree's app under the same gunicorn configuration on
the same Redis and data, and runs each endpoint scenario against it right after this tree's,
in every round: before/after in the same conditions, the ratio of the two per round.

Prints the Markdown table (and the machine), writes ``bench/results/table.json``. Exit status:
0 valid run, 2 invalid (errors, non-2xx, events missing, memory not flat), 1 with ``--strict``
when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_http as hb  # noqa: E402 (needs ROOT on the path)
from bench.shared_data import shared_data  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "results" / "table.json"
MODEL_TENANT = "bench-model"
MODEL_PRODUCTS = 20
SEGMENTS_K = 10
# target share of the floor's req/s and p99 (ms) per scenario; None: reported only
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "floor": (None, None),
    "collect": (0.5, 25.0),
    "recommend_identified": (0.4, 25.0),
    "recommend_anonymous": (0.4, 25.0),
}
SCENARIOS = tuple(TARGETS)
LABELS = {
    "floor": "floor: trivial Flask route, same gunicorn",
    "collect": "`POST /v1/collect`, 5 events",
    "recommend_identified": "`GET /v1/recommend` n=3, identified, 20-product champion, campaigns",
    "recommend_anonymous": "`GET /v1/recommend` n=3, anonymous (half new), same tenant",
}


class TableError(hb.BenchError):
    pass


# -- set-up ------------------------------------------------------------------------------------


def prepare_data_dir(workdir: Path):
    """Settings for a data dir with demographics and segments, and a writable geo dir."""
    from enrichment.demographics import load_demographics
    from enrichment.segments import build_segments
    from store.config import Settings

    shared = shared_data()
    geo = workdir / "geo"
    geo.mkdir()
    for f in (shared / "geonames").glob("*.txt"):
        shutil.copy(f, geo / f.name)
    settings = Settings(data_dir=workdir / "var", geo_dir=geo)
    load_demographics(shared / "zcta_demographics.csv", settings)
    build_segments(settings, k=SEGMENTS_K, seed=0)
    return settings


def model_campaigns(product_ids: list[str], crm_attr: str | None) -> list[dict]:
    """A few live web campaigns, as a tenant runs them: everyone (highest priority), identified
    visitors, a CRM filter, and the top 30 % of one product's model scores."""
    pick = product_ids[len(product_ids) // 2 :]
    base = {"control_share": 0.1, "cost_per_contact": 0.05}
    specs = [
        {"name": "everyone", "audience": {}, "priority": 10},
        {"name": "identified", "audience": {"visitors": "identified"}, "priority": 5},
        {"name": "top scores", "priority": 3,
         "audience": {"score": {"product_id": product_ids[0], "top_share": 0.3}}},
    ]  # fmt: skip
    if crm_attr:
        specs.append(
            {"name": "crm filter", "priority": 1,
             "audience": {"crm": [{"attribute": crm_attr, "op": "ge", "value": 40}]}}
        )  # fmt: skip
    return [
        {**base, **spec, "offer": {"product_id": pick[i % len(pick)]}}
        for i, spec in enumerate(specs)
    ]


def seed_model_tenant(
    r, settings, customers: int, anonymous: int = 3000, seed: int = 7, train_rounds: int = 100
) -> dict:
    """The trained tenant: synthetic CRM + web history, a 20-product champion, campaigns,
    simulated anonymous visitors; returns its site key and the identified visitors' ids."""
    from campaigns.definitions import create_campaign, tenant_facts
    from clickstream.ingest import Ingestor
    from clickstream.simulator import simulate
    from enrichment.segments import list_segments
    from models.pipeline import train_and_register
    from models.synthetic import SyntheticConfig, generate, install
    from models.training import TrainParams
    from store.tenants import get_tenant, rotate_keys

    t0 = time.perf_counter()
    config = SyntheticConfig(customers=customers, products=MODEL_PRODUCTS, dead_products=0,
                             categories=5, seed=seed)  # fmt: skip
    data = generate(config, settings)
    install(r, settings, MODEL_TENANT, data)
    t_install = time.perf_counter() - t0
    trained = train_and_register(
        r, settings, MODEL_TENANT, params=TrainParams(max_rounds=train_rounds)
    )
    if not trained["registry"].get("promoted"):
        raise TableError(f"the trained model was not promoted: {trained['registry']}")
    t_train = time.perf_counter() - t0 - t_install
    facts = tenant_facts(
        r, MODEL_TENANT, lambda: {int(s["id"]) for s in list_segments(settings)} or None
    )
    crm_attr = "age" if facts.crm_attributes and "age" in facts.crm_attributes else None
    for spec in model_campaigns(list(data.products), crm_attr):
        create_campaign(r, MODEL_TENANT, spec, facts)
    tenant = get_tenant(r, MODEL_TENANT)
    assert tenant is not None
    ingestor = Ingestor(r)
    for visitor, batch in simulate(data.catalog, anonymous, seed=hb.SIM_SEED):
        ingestor.ingest(tenant, visitor, batch)
    site = rotate_keys(r, MODEL_TENANT)["site_key"]
    identified = sorted({v for v, _, events in data.sessions
                         if any(e["type"] == "identify" for e in events)})  # fmt: skip
    return {
        "site_key": site,
        "identified": identified,
        "version": trained["version"],
        "customers": customers,
        "sim_prefix": f"sim-{hb.SIM_SEED}-",
        "sim_visitors": anonymous,
        "events_installed": data.n_events,
        "seconds": {"install": round(t_install, 1), "train": round(t_train, 1)},
    }


def start_servers(procs, args, workdir: Path, redis_url: str, settings) -> dict:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "OFFERWISE_DATA_DIR": str(settings.data_dir),
        "OFFERWISE_GEO_DIR": str(settings.geo_dir),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("OFFERWISE_ACCESS_LOG", None)
    floor_url, floor = hb.start_gunicorn(procs, "floor", workdir, args.workers, args.threads, env)
    real_url, real = hb.start_gunicorn(procs, "real", workdir, args.workers, args.threads, env)
    servers = {"floor": (floor_url, floor), "real": (real_url, real)}
    if args.baseline:
        servers["base"] = start_baseline(procs, args, workdir, env)
    return servers


def start_baseline(procs, args, workdir: Path, env: dict) -> tuple:
    """The app of another checkout (``--baseline``), served as this tree's is."""
    import urllib.request

    from bench.child_processes import free_port

    base = args.baseline.resolve()
    port = free_port()
    metrics = workdir / "metrics-base"
    metrics.mkdir()
    child_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics), "PYTHONPATH": str(base)}
    log = workdir / "gunicorn-base.log"
    proc = procs.start(
        "gunicorn-base",
        [sys.executable, str(base / "bench" / "bench_http.py"), "--serve", "real", "--port",
         str(port), "--workers", str(args.workers), "--threads", str(args.threads)],
        env=child_env, log=log,
    )  # fmt: skip
    url = f"http://{hb.HOST}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as res:
                if res.status == 200:
                    return url, proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TableError(f"baseline server did not start\n{hb._log_tail(log)}")
        time.sleep(0.1)


def targets(servers: dict, bench: dict, model: dict, ids_file: Path) -> dict[str, hb.Target]:
    out = _targets(servers["floor"], servers["real"], bench, model, ids_file)
    if "base" in servers:
        twins = _targets(servers["floor"], servers["base"], bench, model, ids_file)
        out.update({f"{k}@base": v for k, v in twins.items() if k != "floor"})
    return out


def _targets(floor_server, real_server, bench, model, ids_file: Path) -> dict[str, hb.Target]:
    floor_url, floor = floor_server
    url, real = real_server
    products = ",".join(bench["product_ids"])
    return {
        "floor": hb.Target(floor_url, floor, "floor.lua", ["/floor"]),
        "collect": hb.Target(url, real, "collect.lua", [bench["site_key"], "{nonce}", products],
                             kind="collect", tenant=hb.TENANT),
        "recommend_identified": hb.Target(url, real, "recommend_known.lua",
                                          [model["site_key"], str(ids_file), "3"],
                                          kind="recommend", tenant=MODEL_TENANT),
        "recommend_anonymous": hb.Target(url, real, "recommend.lua",
                                         [model["site_key"], "{nonce}", model["sim_prefix"],
                                          str(model["sim_visitors"]), "3"],
                                         kind="recommend", tenant=MODEL_TENANT),
    }  # fmt: skip


# -- rounds ------------------------------------------------------------------------------------


def run_rounds(ctx: hb.Context, tg: dict[str, hb.Target], rounds: int, paced: bool) -> list:
    runs = []
    for rnd in range(1, rounds + 1):
        floor = None
        for scenario in SCENARIOS:
            for name in (scenario, f"{scenario}@base"):
                if name not in tg:
                    continue
                run = hb.measure(ctx, name, tg[name], rnd, None)
                runs.append(run)
                _progress(run)
            floor = run.rps if scenario == "floor" else floor
        if not paced or not floor:
            continue
        for scenario in SCENARIOS[1:]:
            share = TARGETS[scenario][0]
            if share is None:
                continue
            run = hb.measure(ctx, scenario, tg[scenario], rnd, share * floor)
            runs.append(run)
            _progress(run)
    return runs


def _progress(run) -> None:
    load = f"@{run.offered_rps:.0f}/s" if run.offered_rps else "max"
    print(f"  round {run.round} {run.scenario:<26} {load:<9} {run.rps:>8.1f} req/s"
          f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  statuses {run.statuses}"
          f"  extra {run.extra}", flush=True)  # fmt: skip


def before_after(runs: list) -> dict[str, dict]:
    """Per endpoint scenario with a ``--baseline`` twin: this tree's req/s over the baseline's,
    same round (median and range), and both trees' medians."""
    out = {}
    for scenario in SCENARIOS[1:]:
        mine = {r.round: r for r in runs if r.scenario == scenario and r.mode == "max"}
        base = {r.round: r for r in runs if r.scenario == f"{scenario}@base" and r.mode == "max"}
        common = sorted(set(mine) & set(base))
        if not common:
            continue
        ratios = [mine[k].rps / base[k].rps for k in common if base[k].rps]
        floor = {r.round: r.rps for r in runs if r.scenario == "floor" and r.mode == "max"}
        med = statistics.median
        out[scenario] = {
            "after_rps": round(med(mine[k].rps for k in common), 1),
            "before_rps": round(med(base[k].rps for k in common), 1),
            "after_vs_floor": round(med(mine[k].rps / floor[k] for k in common if floor.get(k)), 3),
            "before_vs_floor": round(
                med(base[k].rps / floor[k] for k in common if floor.get(k)), 3
            ),
            "after_p99_ms": round(med(mine[k].p99_ms for k in common), 2),
            "before_p99_ms": round(med(base[k].p99_ms for k in common), 2),
            "after_app_cpu_us": round(med(mine[k].app_cpu_us_per_req for k in common), 1),
            "before_app_cpu_us": round(med(base[k].app_cpu_us_per_req for k in common), 1),
            "cpu_speedup": round(med(_cpu(base[k]) / _cpu(mine[k]) for k in common), 3),
            "after_redis_cpu_us": round(med(mine[k].redis_cpu_us_per_req for k in common), 1),
            "before_redis_cpu_us": round(med(base[k].redis_cpu_us_per_req for k in common), 1),
            "speedup": round(med(ratios), 3),
            "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "non_2xx_before": sum(base[k].non_2xx for k in common),
        }
    return out


def _cpu(run) -> float:
    """CPU per request of the whole stack in the run: app workers + Redis + wrk."""
    return run.app_cpu_us_per_req + run.redis_cpu_us_per_req + run.wrk_cpu_us_per_req


def summarize(runs: list) -> dict[str, dict]:
    floor = {r.round: r.rps for r in runs if r.scenario == "floor" and r.mode == "max"}
    floor_cpu = {r.round: _cpu(r) for r in runs if r.scenario == "floor" and r.mode == "max"}
    rows = {}
    for scenario in SCENARIOS:
        mx = [r for r in runs if r.scenario == scenario and r.mode == "max"]
        pc = [r for r in runs if r.scenario == scenario and r.mode == "paced"]
        if not mx:
            continue
        med = statistics.median
        ratios = [r.rps / floor[r.round] for r in mx if floor.get(r.round)]
        # What req/s would show on a CPU-bound machine of our own: the floor's CPU per request
        # over the scenario's, same round. On a shared machine (other jobs taking the cores)
        # it moves far less than req/s does, because waiting costs no CPU.
        cpu_ratios = [
            floor_cpu[r.round] / _cpu(r) for r in mx if floor_cpu.get(r.round) and _cpu(r)
        ]
        row = {
            "rps": round(med(r.rps for r in mx), 1),
            "p50_ms": round(med(r.p50_ms for r in mx), 2),
            "p99_ms": round(med(r.p99_ms for r in mx), 2),
            "ratio": round(med(ratios), 3) if ratios else None,
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None,
            "cpu_ratio": round(med(cpu_ratios), 3) if cpu_ratios else None,
            "cpu_ratio_range": (
                [round(min(cpu_ratios), 3), round(max(cpu_ratios), 3)] if cpu_ratios else None
            ),
            "app_cpu_us_per_req": round(med(r.app_cpu_us_per_req for r in mx), 1),
            "redis_cpu_us_per_req": round(med(r.redis_cpu_us_per_req for r in mx), 1),
            "wrk_cpu_us_per_req": round(med(r.wrk_cpu_us_per_req for r in mx), 1),
            "non_2xx": sum(r.non_2xx for r in mx + pc),
            "socket_errors": sum(sum(r.socket_errors.values()) for r in mx + pc),
            "checks_ok": all(r.check.get("ok", True) for r in mx + pc),
            "rounds": len(mx),
        }
        if pc:
            row["paced_rps"] = round(med(r.rps for r in pc), 1)
            row["paced_offered"] = round(med(r.offered_rps for r in pc), 1)
            row["paced_p50_ms"] = round(med(r.p50_ms for r in pc), 2)
            row["paced_p99_ms"] = round(med(r.p99_ms for r in pc), 2)
        if scenario == "recommend_identified":
            model = sum(r.extra.get("model", 0) for r in mx)
            ok = sum(r.statuses.get("200", 0) for r in mx)
            row["model_share"] = round(model / ok, 3) if ok else 0.0
            row["checks_ok"] = row["checks_ok"] and row["model_share"] > 0.9
        share, p99 = TARGETS[scenario]
        misses = []
        if share is not None and (row["ratio"] or 0) < share:
            misses.append(f"< {share:.0%} of floor")
        judged = row.get("paced_p99_ms", row["p99_ms"])
        if p99 is not None and judged >= p99:
            misses.append(f"p99 >= {p99:g} ms")
        if pc and row["paced_rps"] < 0.95 * row["paced_offered"]:
            misses.append(f"cannot sustain {row['paced_offered']:.0f}/s")
        row["verdict"] = (
            "-" if share is None else ("FAIL: " + "; ".join(misses) if misses else "PASS")
        )
        rows[scenario] = row
    return rows


# -- pipeline, memory ---------------------------------------------------------------------------


def archive_rate(r, settings, tenant: str) -> dict:
    """The archiver (one process) over the stream the rounds filled: events/s, Parquet bytes,
    and what an event costs in Redis while it waits in the stream."""
    from clickstream.archiver import Archiver

    stream = hb_keys().event_stream(tenant)
    backlog = int(r.xlen(stream))
    stream_bytes = int(r.memory_usage(stream, samples=0) or 0)
    tdir = Path(settings.events_dir) / tenant
    before = _parquet_bytes(tdir)
    t0 = time.perf_counter()
    result = Archiver(r, settings.events_dir).archive_tenant(tenant, compact=False)
    seconds = time.perf_counter() - t0
    written = _parquet_bytes(tdir) - before
    return {
        "events": result.events,
        "backlog": backlog,
        "seconds": round(seconds, 2),
        "events_per_s": round(result.events / seconds, 0) if seconds else 0.0,
        "parquet_bytes": written,
        "bytes_per_event": round(written / result.events, 1) if result.events else None,
        "stream_bytes_per_event": round(stream_bytes / backlog, 1) if backlog else None,
    }


def crm_memory(r, tenant: str) -> dict:
    """Bytes per customer of the live CRM version's serving profiles (all 4096 buckets)."""
    from enrichment.crm.serving import BUCKETS, bucket_key, live_serving_id

    sid = live_serving_id(r, tenant)
    if sid is None:
        return {}
    total = customers = 0
    for bucket in BUCKETS:
        key = bucket_key(tenant, sid, bucket)
        total += int(r.memory_usage(key, samples=0) or 0)
        customers += int(r.hlen(key))
    return {"customers": customers, "bytes": total,
            "bytes_per_customer": round(total / customers, 1) if customers else None}  # fmt: skip


def hb_keys():
    from store import keys

    return keys


def _parquet_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet")) if folder.exists() else 0


def profile_memory(r, tenant: str, visitors: list[str]) -> dict:
    """MEMORY USAGE summed over every key of each visitor's live state (profile hash, recent
    items, cart, bought, affinities, dedupe hashes, campaign record), bytes per visitor."""
    keys = hb_keys()
    per: list[int] = []
    by_kind: dict[str, list[int]] = {}
    for v in visitors:
        total = 0
        for kind, key in _visitor_state_keys(r, keys, tenant, v):
            used = r.memory_usage(key, samples=0) or 0
            total += used
            by_kind.setdefault(kind, []).append(used)
        per.append(total)
    return {
        "visitors": len(per),
        "mean_bytes": round(statistics.mean(per), 0) if per else None,
        "p50_bytes": statistics.median(per) if per else None,
        "max_bytes": max(per) if per else None,
        "mean_by_kind": {k: round(statistics.mean(v), 0) for k, v in sorted(by_kind.items())},
    }


def _visitor_state_keys(r, keys, tenant: str, visitor: str):
    from clickstream.profiles import visitor_keys

    yield from visitor_keys(tenant, visitor).items()
    yield "campaigns", keys.person_campaigns(tenant, f"v:{visitor}")
    # dedupe hashes: one per visitor and UTC day of the last week (names from store.keys)
    today = int(time.time() // 86_400)
    for day in range(today - 7, today + 1):
        key = keys.dedupe_ids(tenant, visitor, day)
        if r.exists(key):
            yield "dedupe", key


# -- soak --------------------------------------------------------------------------------------


def worker_rss(server) -> dict[int, float]:
    import psutil

    out = {}
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            out[child.pid] = child.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return out


def soak(ctx: hb.Context, tg: dict, rates: dict[str, float], seconds: float, sample_s: float,
         settings, slack_mb: float) -> dict:  # fmt: skip
    """Identified recommend + collect at fixed rates together, the archiver draining the stream,
    worker RSS sampled; returns samples, growth and errors."""
    from clickstream.archiver import Archiver

    server = tg["recommend_identified"].server
    results: dict[str, tuple] = {}
    errors: list[str] = []

    def load(name: str) -> None:
        target = tg[name]
        args = [a.replace("{nonce}", f"soak{int(time.time())}") for a in target.args]
        try:
            results[name] = hb.run_wrk(target.url, target.script, args, seconds, ctx.load,
                                       rates[name])  # fmt: skip
        except Exception as err:
            errors.append(f"{name}: {err}")

    stop = threading.Event()
    archived = {"events": 0, "runs": 0}

    def archive_loop() -> None:
        archiver = Archiver(ctx.r, settings.events_dir)
        while not stop.wait(1.0):
            try:
                res = archiver.archive_tenant(hb.TENANT, lock_wait_s=0.5)
                archived["events"] += res.events
                archived["runs"] += 1
            except Exception as err:
                errors.append(f"archiver: {err}")

    # Two wrk processes share the connections and threads of one.
    half = hb.Load(connections=max(2, ctx.load.connections // 2),
                   threads=max(1, ctx.load.threads // 2))  # fmt: skip
    ctx = replace(ctx, load=half)
    stream0 = hb.stream_length(ctx.r)
    threads = [threading.Thread(target=load, args=(n,)) for n in rates]
    arch = threading.Thread(target=archive_loop)
    samples: list[tuple[float, dict[int, float]]] = []
    t0 = time.monotonic()
    for t in (*threads, arch):
        t.start()
    while any(t.is_alive() for t in threads):
        samples.append((round(time.monotonic() - t0, 1), worker_rss(server)))
        for t in threads:
            t.join(timeout=sample_s / len(threads))
    samples.append((round(time.monotonic() - t0, 1), worker_rss(server)))
    stop.set()
    arch.join()
    out: dict = {"seconds": seconds, "rates": rates, "errors": errors, "archived": archived}
    for name, (raw, _cpu) in results.items():
        statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
        out[name] = {
            "requests": int(raw["requests"]),
            "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p99_ms": round(raw["latency_us"]["p99"] / 1000, 2),
            "statuses": statuses,
            "socket_errors": {k: int(v) for k, v in raw["errors"].items() if v and k != "status"},
        }
        if set(statuses) - {"200"} or out[name]["socket_errors"]:
            errors.append(f"{name}: statuses {statuses} socket errors {out[name]['socket_errors']}")
    out["stream_backlog_end"] = hb.stream_length(ctx.r)
    out["stream_start"] = stream0
    # Flat: each worker's RSS at the end vs at the end of the first fifth (after warm-up).
    warm_at = samples[0][0] + (samples[-1][0] - samples[0][0]) / 5
    warm = next(s for t, s in samples if t >= warm_at)
    end = samples[-1][1]
    growth = {pid: round(end[pid] - warm[pid], 1) for pid in end if pid in warm}
    out["rss_mb"] = {
        "workers": len(end),
        "after_warmup": {str(p): round(v, 1) for p, v in warm.items()},
        "end": {str(p): round(v, 1) for p, v in end.items()},
        "growth": {str(p): g for p, g in growth.items()},
        "max_growth": max(growth.values()) if growth else None,
        "samples": [(t, {str(p): round(v, 1) for p, v in s.items()}) for t, s in samples],
    }
    out["flat"] = bool(growth) and max(growth.values()) <= slack_mb
    out["ok"] = out["flat"] and not errors
    return out


# -- the table ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")  # fmt: skip


def markdown(rows: dict, pipeline: dict, memory: dict, soak_out: dict | None, meta: dict) -> str:
    lines = [
        f"Machine: {meta['machine']}. gunicorn {meta['workers']} workers x {meta['threads']} "
        f"threads (the `offerwise serve` configuration) on both sides; wrk {meta['connections']} "
        f"connections; {meta['duration_s']:g} s per run, median of {meta['rounds']} rounds, each "
        f"divided by the floor of its own round; Redis on a Unix socket with the embedded "
        f"server's persistence. p99 judged at a fixed rate (the target share of the floor).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | vs floor (range) | vs floor by CPU (range) | app + Redis CPU µs/req | p99 ms at target rate | target | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]  # fmt: skip
    for name, row in rows.items():
        share, p99 = TARGETS[name]
        ratio = "100%" if name == "floor" else (
            f"{row['ratio']:.0%} ({row['ratio_range'][0]:.0%} to {row['ratio_range'][1]:.0%})"
            if row["ratio"] is not None else "-"
        )  # fmt: skip
        paced = (f"{row['paced_p99_ms']:.1f} @ {row['paced_offered']:.0f}/s"
                 if "paced_p99_ms" in row else "")  # fmt: skip
        cpu = "100%" if name == "floor" else (
            f"{row['cpu_ratio']:.0%} ({row['cpu_ratio_range'][0]:.0%} to "
            f"{row['cpu_ratio_range'][1]:.0%})" if row.get("cpu_ratio") else "-"
        )  # fmt: skip
        cost = f"{row['app_cpu_us_per_req']:.0f} + {row['redis_cpu_us_per_req']:.0f}"
        target = "" if share is None else f"≥ {share:.0%}, p99 < {p99:g} ms"
        lines.append(f"| {LABELS[name]} | {row['rps']:.0f} | {row['p50_ms']:.1f} | "
                     f"{row['p99_ms']:.1f} | {ratio} | {cpu} | {cost} | {paced} | {target} | "
                     f"{row['verdict']} |")  # fmt: skip
    if "collect" in rows:
        ev = rows["collect"]["rps"] * hb.EVENTS_PER_BATCH
        lines.append(
            f"| events into the stream (collect, 5 a batch) | {ev:.0f} events/s | | | | | | | | |"
        )
    if pipeline:
        lines.append(
            f"| events into the Parquet archive (archiver, one process) | "
            f"{pipeline['events_per_s']:.0f} events/s | | | | | | | "
            f"{pipeline['bytes_per_event']} B/event on disk | |"
        )
    lines.append("| the same on a local Redis Cluster | not measured | | | | | | | | "
                 "cluster support not on main when this ran |")  # fmt: skip
    if soak_out:
        rss = soak_out["rss_mb"]
        ok = "PASS" if soak_out["ok"] else "FAIL"
        lines.append(
            f"| soak {soak_out['seconds'] / 60:g} min: identified recommend "
            f"{soak_out['rates']['recommend_identified']:.0f}/s + collect "
            f"{soak_out['rates']['collect']:.0f}/s, archiver on | "
            f"{soak_out.get('recommend_identified', {}).get('rps', 0):.0f} + "
            f"{soak_out.get('collect', {}).get('rps', 0):.0f} | | "
            f"{soak_out.get('recommend_identified', {}).get('p99_ms', 0):.1f} | | | | "
            f"RSS per worker flat (max growth {rss['max_growth']} MB over "
            f"{rss['workers']} workers), 0 errors ({len(soak_out['errors'])}) | {ok} |"
        )
    if memory:
        lines += ["", f"Live profile memory (MEMORY USAGE over every key of {memory['visitors']} "
                  f"visitors after the load): mean {memory['mean_bytes']:.0f} B, p50 "
                  f"{memory['p50_bytes']:.0f} B, max {memory['max_bytes']} B per visitor."]  # fmt: skip
        crm = memory.get("crm") or {}
        if crm.get("bytes_per_customer"):
            lines[-1] += (f" CRM serving profile: {crm['bytes_per_customer']:.0f} B per customer"
                          f" ({crm['customers']} customers).")  # fmt: skip
    if pipeline.get("stream_bytes_per_event"):
        lines[-1] += (f" An event waiting in the stream: {pipeline['stream_bytes_per_event']:.0f}"
                      f" B of Redis memory.")  # fmt: skip
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from app.server import default_workers

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    add("--warmup", type=float, default=2, help="unmeasured seconds before each saturated run")
    add("--rounds", type=int, default=3, help="rounds; medians reported (default 3)")
    add("--no-paced", action="store_true", help="skip the fixed-rate runs")
    add("--connections", type=int, default=32)
    add("--wrk-threads", type=int, default=2)
    add("--workers", type=int, default=default_workers())
    add("--threads", type=int, default=4)
    add("--customers", type=int, default=3000, help="CRM customers of the trained tenant")
    add(
        "--visitors",
        type=int,
        default=3000,
        help="simulated visitors seeded per tenant (default 3000)",
    )
    add("--train-rounds", type=int, default=100,
        help="boosting rounds at most of the trained tenant's models (default 100)")  # fmt: skip
    add("--prewarm", type=float, default=8, help="unmeasured seconds per target first")
    add("--soak", type=float, default=600, help="soak seconds (default 600; 0: none)")
    add("--soak-sample", type=float, default=10, help="seconds between RSS samples")
    add("--rss-slack-mb", type=float, default=8.0, help="allowed RSS growth per worker")
    add("--scenarios", default=",".join(SCENARIOS))
    add("--out", type=Path, default=DEFAULT_OUT)
    add("--strict", action="store_true", help="exit 1 when a target is missed")
    add("--keep-logs", action="store_true")
    add("--baseline", type=Path, help="another checkout to measure beside this one (A/B)")
    add("--render", type=Path, help="print the table of a results file again; runs nothing")
    args = p.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := [s for s in chosen if s not in SCENARIOS]:
        p.error(f"--scenarios: unknown {unknown}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = chosen
    return args


def run(args: argparse.Namespace) -> int:
    hb.wrk_binary()
    global SCENARIOS
    SCENARIOS = tuple(s for s in TARGETS if s in args.scenarios)
    commit = hb.git_commit()  # the code the servers load, before anything can change it
    procs = hb.Processes()
    workdir = Path(tempfile.mkdtemp(prefix="offerwise-table-"))
    load = hb.Load(connections=args.connections, threads=args.wrk_threads)
    try:
        (workdir / "redis").mkdir()
        redis_url, r, redis_proc = hb.start_redis(procs, workdir / "redis")
        t0 = time.perf_counter()
        settings = prepare_data_dir(workdir)
        bench = hb.seed(r, 200, args.visitors)
        model = seed_model_tenant(
            r, settings, args.customers, args.visitors, train_rounds=args.train_rounds
        )
        ids_file = workdir / "identified.txt"
        ids_file.write_text("\n".join(model["identified"]) + "\n")
        print(f"seeded in {time.perf_counter() - t0:.0f} s: {len(model['identified'])} identified"
              f" visitors, model {model['version']} ({model['seconds']})", flush=True)  # fmt: skip
        servers = start_servers(procs, args, workdir, redis_url, settings)
        tg = targets(servers, bench, model, ids_file)
        ctx = hb.Context(r, redis_proc, load, args.duration, args.warmup)
        # Every worker loads the champion and fills its caches before anything is measured
        # (a cold first run measured 14 req/s, p99 7 s, while four workers loaded the model).
        for name, target in tg.items():
            if name != "floor":
                warm = [a.replace("{nonce}", "prewarm") for a in target.args]
                hb.run_wrk(target.url, target.script, warm, args.prewarm, load)
        runs = run_rounds(ctx, tg, args.rounds, not args.no_paced)
        rows = summarize(runs)
        pipeline = archive_rate(r, settings, hb.TENANT) if "collect" in rows else {}
        sample = model["identified"][:500] + [
            f"{model['sim_prefix']}{i}" for i in range(min(500, model["sim_visitors"]))
        ]
        memory = profile_memory(r, MODEL_TENANT, sample)
        memory["crm"] = crm_memory(r, MODEL_TENANT)
        memory["redis_used_memory"] = int(r.info("memory")["used_memory"])
        soak_out = None
        if args.soak > 0 and {"collect", "recommend_identified"} <= set(rows):
            rates = {
                "recommend_identified": 0.5 * rows["recommend_identified"]["rps"],
                "collect": 0.5 * rows["collect"]["rps"],
            }
            print(f"soak: {args.soak:g} s at {rates}", flush=True)
            soak_out = soak(ctx, tg, rates, args.soak, args.soak_sample, settings,
                            args.rss_slack_mb)  # fmt: skip
            print(f"soak: ok={soak_out['ok']} rss growth {soak_out['rss_mb']['growth']} MB"
                  f" errors {soak_out['errors']}", flush=True)  # fmt: skip
    finally:
        procs.stop_all()
        if args.keep_logs:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "machine": machine(),
        "workers": args.workers,
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "customers": args.customers,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    return report(args, runs, pipeline, memory, soak_out, meta)


def render(args: argparse.Namespace) -> int:
    """``--render FILE``: the table again from a results file (after a change of the table's
    columns, say), with the figures of the run that wrote it."""
    from types import SimpleNamespace

    doc = json.loads(args.render.read_text())
    runs = [SimpleNamespace(**run) for run in doc["runs"]]
    global SCENARIOS
    SCENARIOS = tuple(s for s in TARGETS if any(r.scenario == s for r in runs))
    return report(args, runs, doc["pipeline"], doc["memory"], doc["soak"], doc["meta"])


def report(args, runs: list, pipeline: dict, memory: dict, soak_out, meta: dict) -> int:
    rows = summarize(runs)
    compared = before_after(runs)
    table = markdown(rows, pipeline, memory, soak_out, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "pipeline": pipeline,
                                    "memory": memory, "soak": soak_out, "before_after": compared,
                                    "runs": [vars(x) for x in runs], "markdown": table},
                                   indent=2) + "\n")  # fmt: skip
    print()
    print(table)
    for scenario, c in compared.items():
        print(f"before/after {scenario}: {c['before_rps']:.0f} -> {c['after_rps']:.0f} req/s "
              f"(x{c['speedup']:.2f}, range {c['speedup_range']}), vs floor "
              f"{c['before_vs_floor']:.0%} -> {c['after_vs_floor']:.0%}, p99 "
              f"{c['before_p99_ms']:.1f} -> {c['after_p99_ms']:.1f} ms, app CPU "
              f"{c['before_app_cpu_us']:.0f} -> {c['after_app_cpu_us']:.0f} us/req, Redis CPU "
              f"{c['before_redis_cpu_us']:.0f} -> {c['after_redis_cpu_us']:.0f} us/req; whole "
              f"stack CPU per request x{c['cpu_speedup']:.2f} less")  # fmt: skip
    print(f"\nresults written to {args.out}")
    problems = [f"{k}: non-2xx/errors/check" for k, row in rows.items()
                if row["non_2xx"] or row["socket_errors"] or not row["checks_ok"]]  # fmt: skip
    if soak_out is not None and not soak_out["ok"]:
        problems.append(f"soak: flat={soak_out['flat']} errors={soak_out['errors']}")
    if problems:
        print("INVALID RUN: " + "; ".join(problems), file=sys.stderr)
        return 2
    if args.strict and any(r["verdict"].startswith("FAIL") for r in rows.values()):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    try:
        return render(args) if args.render else run(args)
    except hb.BenchError as err:
        print(f"bench_table: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench_table: interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
