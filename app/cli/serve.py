"""``offerwise serve``: the API under gunicorn."""

from __future__ import annotations

import click

from app.server import PortInUse, default_workers
from app.server import serve as run_server
from app.settings import load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=None, type=click.IntRange(min=1), help="Default: 2 per CPU core."
)
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Threads per worker.",
)
def serve(host: str, port: int, workers: int | None, threads: int) -> None:
    """Run the API server (uses REDIS_URL, else the embedded Redis of the data dir)."""
    try:
        run_server(load_settings(), host, port, workers or default_workers(), threads)
    except PortInUse as err:
        raise click.ClickException(str(err)) from err
