"""Request ids (the caller's when sane, else a new unique one), metric label hygiene, and
per-tenant series shown only with the metrics token."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import RequestIds, TenantsSummed
from store.tenants import create_tenant
from tests.helpers import batch

METRICS = {"Authorization": "Bearer metrics-secret-token"}


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


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _accepted(samples: dict[tuple[str, frozenset], float]) -> dict[frozenset, float]:
    return {
        labels: v
        for (name, labels), v in samples.items()
        if name == "offerwise_events_total" and ("outcome", "accepted") in labels
    }


def _accepted_by_tenant(client) -> dict[str, float]:
    text = client.get("/metrics", headers=METRICS).get_data(as_text=True)
    return {dict(labels)["tenant"]: v for labels, v in _accepted(_samples(text)).items()}


def _accepted_total(client) -> float:
    """What anyone may read: accepted events summed over tenants, with no tenant in sight."""
    anyone = client.get("/metrics")
    assert anyone.status_code == 200
    text = anyone.get_data(as_text=True)
    assert "tenant=" not in text and "acme" not in text and "globex" not in text
    assert "offerwise_http_requests_total" in text
    summed = _accepted(_samples(text))  # counters live on across the tests of this process
    assert set(summed) <= {frozenset({("outcome", "accepted")})}
    return sum(summed.values())


@pytest.mark.parametrize("token_set", [True, False], ids=["token set", "no token configured"])
def test_tenant_series_need_the_metrics_token(client, app, r, acme, token_set):
    if not token_set:
        settings = app.config["OFFERWISE_SETTINGS"]
        app.config["OFFERWISE_SETTINGS"] = replace(settings, metrics_token=None)
    other = create_tenant(r, "globex", ["https://shop.example"], rate_limit=10_000)
    total_before = _accepted_total(client)
    by_tenant_before = _accepted_by_tenant(client) if token_set else {}
    for keys in (acme, other, other):
        assert client.post("/v1/collect", json=batch(keys["site_key"])).status_code == 200
    total = _accepted_total(client)
    assert total == total_before + 3
    if not token_set:  # whatever is sent: there is nothing to unlock
        assert "acme" not in client.get("/metrics", headers=METRICS).get_data(as_text=True)
        return
    by_tenant = _accepted_by_tenant(client)
    grew = {t: v - by_tenant_before.get(t, 0) for t, v in by_tenant.items()}
    assert {t: n for t, n in grew.items() if n} == {"acme": 1, "globex": 2}
    assert sum(by_tenant.values()) == total


def test_a_wrong_metrics_token_is_refused(client):
    res = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert res.status_code == 401 and "OFFERWISE_METRICS_TOKEN" in res.json["message"]


def test_tenants_summed_adds_counters_and_histograms_and_drops_gauges():
    registry = CollectorRegistry()
    counter = Counter("c", "", ["tenant", "outcome"], registry=registry)
    hist = Histogram("h", "", ["tenant"], buckets=(1, 2), registry=registry)
    gauge = Gauge("g", "", ["tenant"], registry=registry)
    plain = Gauge("p", "", registry=registry)
    counter.labels("a", "ok").inc(2)
    counter.labels("b", "ok").inc(3)
    counter.labels("b", "bad").inc()
    hist.labels("a").observe(0.5)
    hist.labels("b").observe(1.5)
    hist.labels("b").observe(5)
    gauge.labels("a").set(4)
    plain.set(7)
    summed = CollectorRegistry(auto_describe=False)
    summed.register(TenantsSummed(registry))
    samples = _samples(generate_latest(summed).decode())
    assert samples[("c_total", frozenset({("outcome", "ok")}))] == 5
    assert samples[("c_total", frozenset({("outcome", "bad")}))] == 1
    buckets = {dict(k[1])["le"]: v for k, v in samples.items() if k[0] == "h_bucket"}
    assert buckets == {"1.0": 1, "2.0": 2, "+Inf": 3}
    assert samples[("h_count", frozenset())] == 3 and samples[("h_sum", frozenset())] == 7
    assert samples[("p", frozenset())] == 7
    assert not [k for k in samples if k[0] == "g" or any(n == "tenant" for n, _ in k[1])]
