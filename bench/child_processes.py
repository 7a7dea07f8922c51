"""What the benchmarks' child processes share: a free port to listen on, and dying with the
benchmark instead of outliving it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the child before exec (``preexec_fn``): its own process group, so Ctrl+C reaches only
    the benchmark, which stops its children in order; and SIGTERM if the benchmark dies, even
    by SIGKILL (Linux)."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
