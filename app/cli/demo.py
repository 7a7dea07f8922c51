"""``offerwise demo``: the whole product on one machine with one command.

Starts (or joins) the embedded Redis, creates the demo tenant and catalog, seeds some synthetic
traffic so the offers have something to rank, runs the background worker and the API server,
and serves the demo shop at /demo/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import click
import orjson

from app.pages import DEMO_CATALOG
from app.server import PortInUse, check_port_free, default_workers, serve
from app.settings import load_settings
from clickstream import catalog
from clickstream.ingest import Ingestor, popularity_key
from clickstream.simulator import simulate
from enrichment.demographics import DemographicsError, demographics, ensure_demographics
from enrichment.segments import SegmentsError, build_segments, segmentation
from store.redis_client import get_redis, redis_url
from store.tenants import create_tenant, get_tenant, rotate_keys, update_tenant

DEMO_TENANT = "demo"


def prepare_enrichment() -> dict:
    """Point the demo at the public data (GeoNames, ZIP census table) and build segments once.

    Uses OFFERWISE_GEO_DIR / OFFERWISE_DEMOGRAPHICS (and _JOIN) when set, else the files under
    OFFERWISE_SHARED_DATA (see README "Data"). Without any data the demo still runs; ZIPs then
    get geo-less answers.
    """
    shared = Path(os.environ.get("OFFERWISE_SHARED_DATA", "../shared/data")).expanduser().resolve()
    if not os.environ.get("OFFERWISE_GEO_DIR") and (shared / "geonames").is_dir():
        os.environ["OFFERWISE_GEO_DIR"] = str(shared / "geonames")
    if not os.environ.get("OFFERWISE_DEMOGRAPHICS") and (shared / "zcta_demographics.csv").exists():
        os.environ["OFFERWISE_DEMOGRAPHICS"] = str(shared / "zcta_demographics.csv")
        if (
            not os.environ.get("OFFERWISE_DEMOGRAPHICS_JOIN")
            and (shared / "zcta_income_acs.csv").exists()
        ):
            os.environ["OFFERWISE_DEMOGRAPHICS_JOIN"] = str(shared / "zcta_income_acs.csv")
    settings = load_settings()
    status = {"geo_dir": str(settings.geo_dir) if settings.geo_dir else None}
    try:
        status["demographics"] = (
            "loaded now"
            if ensure_demographics(settings)
            else "ready"
            if demographics(settings)
            else "none"
        )
        if demographics(settings) is not None and segmentation(settings) is None:
            build_segments(settings)
        status["segments"] = "ready" if segmentation(settings) is not None else "none"
    except (DemographicsError, SegmentsError) as err:
        status["problem"] = str(err)
    return status


def prepare_demo(port: int, seed_visitors: int = 400) -> dict:
    """Idempotent: tenant, keys file, catalog, seeded traffic. Returns the keys."""
    settings = load_settings()
    redis_url(settings, role="serve")
    r = get_redis(settings)
    origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    keys_file = settings.data_dir / "demo" / "keys.json"
    if get_tenant(r, DEMO_TENANT) is None:
        keys = create_tenant(r, DEMO_TENANT, origins, rate_limit=1000)
    elif keys_file.exists():
        keys = orjson.loads(keys_file.read_bytes())
        update_tenant(r, DEMO_TENANT, origins=origins)
    else:
        keys = rotate_keys(r, DEMO_TENANT)
        update_tenant(r, DEMO_TENANT, origins=origins)
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    keys_file.write_bytes(orjson.dumps(keys))
    keys_file.chmod(0o600)
    report = catalog.parse_upload(DEMO_CATALOG.read_bytes(), "text/csv")
    catalog.replace_catalog(r, DEMO_TENANT, report.products)
    if not r.exists(popularity_key(DEMO_TENANT)):
        tenant = get_tenant(r, DEMO_TENANT)
        assert tenant is not None
        ingestor = Ingestor(r)
        for visitor, events in simulate(report.products, seed_visitors):
            ingestor.ingest(tenant, visitor, events)
    return keys


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=None, type=click.IntRange(min=1))
@click.option("--no-worker", is_flag=True, help="Do not start the background worker (archiver).")
def demo(host: str, port: int, workers: int | None, no_worker: bool) -> None:
    """Run the demo: API server, background worker and the demo shop on http://HOST:PORT/demo/."""
    try:
        check_port_free(host, port)
    except PortInUse as err:
        raise click.ClickException(f"{err} (choose another with --port)") from err
    enrichment = prepare_enrichment()
    keys = prepare_demo(port)
    os.environ["OFFERWISE_DEMO"] = "1"
    worker = None
    if not no_worker:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], env=os.environ.copy()
        )
    base = f"http://{host}:{port}"
    click.echo(
        f"Offerwise demo is up:\n  shop      {base}/demo/\n  API docs  {base}/v1/docs\n"
        f"  metrics   {base}/metrics\n  site key  {keys['site_key']}\n  admin key {keys['admin_key']}\n"
        f"  ZIP data  {enrichment}\n"
        "Press Ctrl+C to stop.",
        err=True,
    )
    try:
        serve(load_settings(), host, port, workers or default_workers())
    finally:
        if worker is not None:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=15)
