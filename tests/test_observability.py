"""Request ids (the caller's when sane, else a new unique one) and metric label hygiene."""

from __future__ import annotations

import os

from app.observability import RequestIds


def test_ids_are_unique_and_a_sane_incoming_id_is_kept(client):
    seen = {client.get("/healthz").headers["X-Request-ID"] for _ in range(50)}
    assert len(seen) == 50 and all(0 < len(i) <= 64 for i in seen)
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    )
    long = "x" * 65
    assert client.get("/healthz", headers={"X-Request-ID": long}).headers["X-Request-ID"] != long


def test_forked_workers_never_share_ids():
    ids = RequestIds()
    parent = {ids.new() for _ in range(3)}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker would issue
        os.write(write, " ".join(ids.new() for _ in range(3)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split())
    assert len(child) == 3 and not child & (parent | {ids.new() for _ in range(3)})


def test_metrics_label_unknown_methods_as_one(client):
    for verb in ("FOO1", "FOO2", "BREW"):
        client.open("/healthz", method=verb)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'method="OTHER"' in metrics and "FOO1" not in metrics and "BREW" not in metrics
