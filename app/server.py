"""Run the app under gunicorn from Python (``offerwise serve`` and the demo)."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
from collections.abc import Callable

import orjson
from gunicorn.app.base import BaseApplication
from gunicorn.http.errors import LimitRequestHeaders, LimitRequestLine
from gunicorn.workers.gthread import ThreadWorker

from app.connection_balance import ConnectionBalance
from app.errors import INTERNAL_ERROR, error_payload
from app.supervisor import StoreSupervisor
from store.config import Settings
from store.redis_client import embedded_server, redis_url

# gunicorn's defaults, set here so that its refusals (414, 431) and the README can name them.
LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190


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


def _post_worker_init(worker) -> None:
    # Everything loaded so far (Flask, numpy, xgboost, the app) lives as long as the worker:
    # moved out of the collector's generations, a full collection no longer walks it, which
    # showed as 40-50 ms stalls in p99 at a steady 800 req/s.
    gc.freeze()
    _quit_once(worker)


def _quit_once(worker) -> None:
    """Handle the first quit signal only.

    Ctrl+C reaches each worker twice: from the terminal (the whole process group) and as the
    master's SIGQUIT. gthread's handle_quit shuts its thread pool down under a non-reentrant
    lock, and a second quit arriving inside that re-entered it: the worker deadlocked until the
    master killed it after graceful_timeout ("Worker was sent SIGKILL", a 10 s stop; py-spy
    showed handle_quit nested in handle_quit). Earlier, a second quit during the atexit hooks
    printed a traceback per worker.
    """
    handle_quit = worker.handle_quit
    quitting = False

    def once(sig: int, frame: object) -> None:
        nonlocal quitting
        if not quitting:
            quitting = True
            handle_quit(sig, frame)

    # gunicorn installed its handlers before this hook runs.
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, once)


def refusal_message(exc: BaseException, status: int) -> str:
    """The message of a refusal gunicorn answers itself, before the app sees the request."""
    if isinstance(exc, LimitRequestLine):
        return (
            f"request line: longer than the limit of {LIMIT_REQUEST_LINE} bytes "
            "(method, path with query string, and version)"
        )
    if isinstance(exc, LimitRequestHeaders):
        return (
            f"headers: over the limit of {LIMIT_REQUEST_FIELDS} header fields "
            f"or {LIMIT_REQUEST_FIELD_SIZE} bytes per field"
        )
    return INTERNAL_ERROR if status >= 500 else f"request: {exc}"


class _JsonErrorPage:
    """The client socket as gunicorn's ``handle_error`` writes to it: its HTML error page is
    replaced by the API's JSON error shape (app.errors), with gunicorn's status line. Status,
    logging and access log stay gunicorn's own."""

    def __init__(self, sock: socket.socket, exc: BaseException) -> None:
        self._sock = sock
        self._exc = exc

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)

    def sendall(self, page: bytes) -> None:
        status_line, sep, _ = page.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if not sep or len(parts) < 2 or not parts[1].isdigit():
            self._sock.sendall(page)  # not the page gunicorn writes today: left as it is
            return
        status = int(parts[1])
        body = orjson.dumps(error_payload(status, refusal_message(self._exc, status)))
        head = (
            b"%s\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (status_line, len(body))
        )
        self._sock.sendall(head + body)


class JsonErrorsWorker(ThreadWorker):
    """gunicorn's threaded worker whose own refusals (request line or headers over the limit,
    malformed HTTP) are JSON like every answer of the API, not HTML."""

    def handle_error(self, req, client, addr, exc) -> None:  # type: ignore[no-untyped-def]
        super().handle_error(req, _JsonErrorPage(client, exc), addr, exc)


def gunicorn_options(host: str, port: int, workers: int, threads: int = 4) -> dict:
    """One configuration for the service and the benchmark's framework floor."""
    balance = ConnectionBalance(slots=2 * workers)

    def child_exit(server: object, worker: object) -> None:
        _child_exit(server, worker)
        balance.release(server, worker)

    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": JsonErrorsWorker,
        "threads": threads,
        "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
        # Each worker listens on its own SO_REUSEPORT socket, so the kernel (Linux; BSD kernels
        # do not balance) spreads connections evenly; on one shared socket a worker could accept
        # every keep-alive connection of a client pool and serve them all from one core while
        # the others idled (measured).
        "reuse_port": True,
        "keepalive": 5,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "pre_fork": balance.assign,
        "pre_request": balance.before_request,
        "child_exit": child_exit,
        "post_worker_init": _post_worker_init,
    }


class PortInUse(RuntimeError):
    pass


def check_port_free(host: str, port: int) -> None:
    """Fail fast on a busy port. With ``reuse_port`` the workers bind, not the master, and a
    worker that cannot bind is respawned forever instead of stopping the server.

    The probe binds as the workers do, with ``SO_REUSEADDR``: without it the connections of a
    server just stopped under load, left in TIME_WAIT for 60 s, made the port look taken although
    nothing listened and the workers could bind. A live listener still refuses the probe (Linux
    lets no socket share a listening port without ``SO_REUSEPORT``, which the probe does not set).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen()
        except OSError as err:
            raise PortInUse(f"cannot listen on {host}:{port}: {err.strerror}") from err


def serve(settings: Settings, host: str, port: int, workers: int, threads: int = 4) -> None:
    """Blocks until gunicorn stops. Workers inherit the store URL and the metrics dir."""
    check_port_free(host, port)
    os.environ["REDIS_URL"] = redis_url(settings, role="serve")
    metrics_dir = settings.metrics_dir
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # prometheus-client picks its value store when first imported, and libraries the CLI loads
    # (rq) import it before this point: re-pick now so the workers forked below share files.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    options = gunicorn_options(host, port, workers, threads)
    embedded = embedded_server()
    if embedded is not None:
        # A thread of the master, from when gunicorn is ready; stopped in on_exit, before the
        # master's exit hooks release the server (running then, it would start it again).
        supervisor = StoreSupervisor(embedded)
        options["when_ready"] = lambda _server: supervisor.start()
        options["on_exit"] = lambda _server: supervisor.stop()
    GunicornApp(options).run()
