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

import click
import orjson

from app.pages import DEMO_CATALOG
from app.server import default_workers, serve
from clickstream import catalog
from clickstream.ingest import Ingestor, popularity_key
from clickstream.simulator import simulate
from store.config import load_settings
from store.redis_client import get_redis, redis_url
from store.tenants import create_tenant, get_tenant, rotate_keys, update_tenant

DEMO_TENANT = "demo"


def prepare_demo(port: int, seed_visitors: int = 400) -> dict:
    """Idempotent: tenant, keys file, catalog, seeded traffic. Returns the keys."""
    settings = load_settings()
    redis_url(settings, role="serve")
    r = get_redis(settings=settings)
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
    keys = prepare_demo(port)
    os.environ["OFFERWISE_DEMO"] = "1"
    worker = None
    if not no_worker:
        worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=os.environ.copy())
    base = f"http://{host}:{port}"
    click.echo(
        f"Offerwise demo is up:\n  shop      {base}/demo/\n  API docs  {base}/v1/docs\n"
        f"  metrics   {base}/metrics\n  site key  {keys['site_key']}\n  admin key {keys['admin_key']}\n"
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
