"""Headless Debian Chromium driven by Playwright (no downloaded browser builds)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> str:
    if not CHROMIUM:
        pytest.skip("Debian chromium is not installed (make system-deps installs it)")
    return CHROMIUM


@contextmanager
def serve_in_thread(app, port: int = 0) -> Iterator[str]:
    """The app over real HTTP on loopback for the browser."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@contextmanager
def closing_contexts(b) -> Iterator[object]:
    """``b``, a browser shared by a module's tests (the ``chromium`` fixture), for one test's
    block: every context the block opened (``new_context``, ``new_page``) is closed at its end,
    as closing a browser of its own would, so no page, cookie or storage outlives the block.
    Launching Chromium took 8 to 11 s on the loaded 2-core machine, 16 times per suite."""
    before = set(b.contexts)
    try:
        yield b
    finally:
        for context in b.contexts:
            if context not in before:
                context.close()


@contextmanager
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=require_chromium(), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield b
        finally:
            b.close()
