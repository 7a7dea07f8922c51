"""Run the app under gunicorn from Python (``offerwise serve`` and the demo)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from gunicorn.app.base import BaseApplication

from store.config import Settings
from store.redis_client import redis_url


def default_workers() -> int:
    return max(2, (os.cpu_count() or 1) * 2)


class GunicornApp(BaseApplication):
    """Gunicorn run from Python; ``factory`` builds the WSGI app in each worker."""

    def __init__(self, options: dict, factory: Callable[[], object] | None = None) -> None:
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        if self.factory is not None:
            return self.factory()
        from app import create_app

        return create_app()


def _child_exit(_server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def gunicorn_options(host: str, port: int, workers: int, threads: int = 4) -> dict:
    """One configuration for the service and the benchmark's framework floor."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 5,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "child_exit": _child_exit,
    }


def serve(settings: Settings, host: str, port: int, workers: int, threads: int = 4) -> None:
    """Blocks until gunicorn stops. Workers inherit the store URL and the metrics dir."""
    os.environ["REDIS_URL"] = redis_url(settings, role="serve")
    metrics_dir = settings.metrics_dir
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # prometheus-client picks its value store when first imported, and libraries the CLI loads
    # (rq) import it before this point: re-pick now so the workers forked below share files.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    GunicornApp(gunicorn_options(host, port, workers, threads)).run()
