"""Fixtures of the system tests: one headless Chromium per browser module, and the demo.

``offerwise demo``'s first start (ZIP data, CRM import, seeded traffic, training, campaign) is
the slow part of tests/system/test_demo.py, both of its browser tests of the shop and of its
test of what the first and a second start print: they share one first start instead of
installing and training the demo twice (about 3 minutes of a loaded 2-core machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser import browser, require_chromium
from tests.helpers import free_port
from tests.synth_world import base_artifacts

CLI = str(Path(sys.executable).with_name("offerwise"))


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One Chromium for the module's tests; each test opens its contexts within
    ``tests.browser.closing_contexts(chromium)``, which closes them when the test is done."""
    require_chromium()
    with browser() as b:
        yield b


@dataclass
class DemoStart:
    """One run of ``offerwise demo``: its stderr lines, and the event set once it is up."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    up: threading.Event = field(default_factory=threading.Event)
    # The shop page fetched the moment the banner appeared: (status, body).
    first_page: tuple[int, bytes] | None = None

    def banner(self) -> str:
        text = "".join(self.lines)
        return text[text.index("Offerwise demo is up") :]

    def tail(self) -> str:
        return "".join(self.lines[-30:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Demo:
    """A data dir where ``offerwise demo`` was started; ``first`` is that first start."""

    data_dir: Path
    env: dict[str, str]
    cwd: Path
    port: int
    first: DemoStart
    current: DemoStart

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DemoStart:
        """Another ``offerwise demo`` on the same data dir and port (stops a running one)."""
        self.current.stop()
        self.current = start_demo(self.env, self.port, self.cwd)
        return self.current

    def running(self, timeout: float = 300) -> DemoStart:
        """The running demo: the first start, or a new one if a test stopped it."""
        if self.current.proc.poll() is not None:
            self.start()
        assert self.current.up.wait(timeout), self.current.tail()
        return self.current


def start_demo(env: dict[str, str], port: int, cwd: Path) -> DemoStart:
    proc = subprocess.Popen(
        [CLI, "demo", "--port", str(port), "--no-worker", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
    )  # fmt: skip
    start = DemoStart(proc)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            start.lines.append(line)
            if line.startswith("Press Ctrl+C"):
                try:
                    url = f"http://127.0.0.1:{port}/demo/"
                    with urllib.request.urlopen(url, timeout=5) as res:
                        start.first_page = (res.status, res.read())
                except OSError as err:
                    start.first_page = (0, repr(err).encode())
                start.up.set()

    threading.Thread(target=read, daemon=True).start()
    return start


@pytest.fixture(scope="session")
def demo(
    shared_data: Path, geo_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """``offerwise demo`` as ``make demo`` runs it, first start on a fresh data dir, its own
    embedded Redis; running until a test stops it (``Demo.running`` starts it again)."""
    tmp = tmp_path_factory.mktemp("demo")
    # The ZIP table and segments of the test suite, as `make demo` leaves them after a first
    # start; the demo is pointed at the same table, so it has nothing to load again.
    base = base_artifacts(shared_data, geo_dir, tmp_path_factory.getbasetemp())
    shutil.copytree(base / "artifacts", tmp / "var" / "artifacts")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        OFFERWISE_DATA_DIR=str(tmp / "var"),
        OFFERWISE_GEO_DIR=str(geo_dir),
        OFFERWISE_DEMOGRAPHICS=str(shared_data / "zcta_demographics.csv"),
    )
    port = free_port()
    first = start_demo(env, port, tmp)
    made = Demo(tmp / "var", env, tmp, port, first, first)
    try:
        assert first.up.wait(600), first.tail()
        yield made
    finally:
        made.current.stop()
