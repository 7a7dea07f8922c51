"""``offerwise demo``: the whole product on one machine with one command.

Starts (or joins) the embedded Redis, loads the public ZIP data and builds segments (first start),
installs the demo tenant (``app.demo.setup``: catalog, CRM, traffic, models, campaign; reused on
later starts), runs the background worker and the API server, and prints the banner once the
server answers.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click
import psutil

from app.cli.output import emit, fail
from app.demo.setup import Demo, export_files, prepare_demo
from app.server import PortInUse, check_port_free, default_workers, serve
from app.settings import load_settings, shared_data_dir
from enrichment.demographics import DemographicsError, demographics, ensure_demographics
from enrichment.segments import SegmentsError, build_segments, segmentation
from store.redis_client import get_redis, redis_url


def prepare_enrichment() -> dict:
    """Point the demo at the public data (GeoNames, ZIP census table) and build segments once.

    Uses OFFERWISE_GEO_DIR / OFFERWISE_DEMOGRAPHICS (and _JOIN) when set, else the files under
    OFFERWISE_SHARED_DATA (see README "Data"). Without any data the demo still runs; ZIPs then
    get geo-less answers.
    """
    shared = shared_data_dir()
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
            status["segments"] = "built now"
        else:
            status["segments"] = "ready" if segmentation(settings) is not None else "none"
    except (DemographicsError, SegmentsError) as err:
        status["problem"] = str(err)
    return status


def banner(base: str, demo: Demo, enrichment: dict) -> str:
    steps = "\n".join(f"    {name:<9} {what}" for name, what in demo.steps.items())
    zip_data = ", ".join(f"{k} {v}" for k, v in enrichment.items() if k != "geo_dir")
    return (
        f"\nOfferwise demo is up (ready {time.time() - psutil.Process().create_time():.1f} s "
        "after the command started):\n"
        f"  shop       {base}/demo/\n"
        f"  dashboard  {base}/dashboard/   (sign in with the admin key below)\n"
        f"  API docs   {base}/v1/docs\n"
        f"  metrics    {base}/metrics\n"
        f"  admin key  {demo.keys['admin_key']}\n"
        f"  site key   {demo.keys['site_key']}\n"
        f"  ZIP data   {zip_data}\n"
        f"  set-up\n{steps}\n"
        "Press Ctrl+C to stop.\n"
    )


def announce_when_listening(
    url: str, text: Callable[[], str], timeout: float = 120.0
) -> threading.Thread:
    """Print ``text()`` once ``url`` answers (the server really listens), from a thread."""

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as res:
                    if res.status == 200:
                        click.echo(text(), err=True)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        click.echo(f"the server did not answer at {url} within {timeout:.0f} s", err=True)

    thread = threading.Thread(target=wait, name="demo-banner", daemon=True)
    thread.start()
    return thread


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=None, type=click.IntRange(min=1))
@click.option("--no-worker", is_flag=True, help="Do not start the background worker (archiver).")
@click.option(
    "--export",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the demo's catalog.csv, customers.csv and holdings.csv into this folder and "
    "exit (sample files for a tenant of your own; see the README's walk-through).",
)
def demo(host: str, port: int, workers: int | None, no_worker: bool, export: Path | None) -> None:
    """Run the demo: API server, background worker and the demo shop on http://HOST:PORT/demo/."""
    if export is not None:
        prepare_enrichment()
        try:
            emit(export_files(load_settings(), export))
        except ValueError as err:
            fail(str(err))
        return
    try:
        check_port_free(host, port)
    except PortInUse as err:
        raise click.ClickException(f"{err} (choose another: make demo PORT=8001)") from err
    enrichment = prepare_enrichment()
    os.environ["OFFERWISE_DEMO"] = "1"
    settings = load_settings()
    redis_url(settings, role="serve")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    click.echo("Preparing the demo shop (the first start trains its models)...", err=True)
    prepared = prepare_demo(get_redis(settings), settings, base)
    worker = None
    if not no_worker:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], env=os.environ.copy()
        )
    announce_when_listening(f"{base}/healthz", lambda: banner(base, prepared, enrichment))
    try:
        serve(settings, host, port, workers or default_workers())
    finally:
        if worker is not None:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=15)
