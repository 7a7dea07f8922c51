"""Structured JSON logs with request ids, and Prometheus metrics.

Under gunicorn every worker is a separate process, so metrics use prometheus-client's
multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (``offerwise serve`` sets it);
``/metrics`` then aggregates all workers.

Series labelled by tenant tell who the customers are and how busy each one is, so ``/metrics``
shows them only to a caller with the metrics token (``OFFERWISE_METRICS_TOKEN``); everyone
else gets them summed over tenants.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterable

import orjson
from flask import Flask, Response, current_app, g, request
from flask_smorest import abort
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    generate_latest,
)
from prometheus_client import multiprocess as prom_mp
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

REQUESTS = Counter(
    "offerwise_http_requests_total", "HTTP requests", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "offerwise_http_request_seconds",
    "Request latency",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter("offerwise_events_total", "Collected events by outcome", ["tenant", "outcome"])
OFFERS = Counter("offerwise_offers_served_total", "Offers served", ["tenant", "source"])


class LabelChildren:
    """A metric's children by label values, each made once: ``labels()`` validates the values
    and takes a lock on every call, a measurable share of a collect request. Only for labels of
    bounded cardinality (tenants, outcomes, routes, methods, statuses)."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def __call__(self, *values: str) -> MetricWrapperBase:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


REQUESTS_BY = LabelChildren(REQUESTS)
LATENCY_BY = LabelChildren(LATENCY)
EVENTS_BY = LabelChildren(EVENTS)
OFFERS_BY = LabelChildren(OFFERS)
CAMPAIGN_EVENTS = Counter(
    "offerwise_campaign_events_total",
    "Campaign responses counted at collect (impression, click, conversion) by group",
    ["tenant", "campaign", "group", "event"],
)
MODEL_OFFER_EVENTS = Counter(
    "offerwise_model_offer_events_total",
    "Responses to model offers by model version and score decile (1: top 10%)",
    ["tenant", "model_version", "decile", "event"],
)
STORE_RESTARTS = Counter(
    "offerwise_store_restarts_total",
    "Restarts of the embedded Redis by `offerwise serve` after it stopped (restarted, failed)",
    ["outcome"],
)
MODEL_LOAD_FAILURES = Counter(
    "offerwise_model_load_failures_total",
    "Champion versions a worker could not load (it keeps serving the previous one)",
    ["tenant"],
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "method", "path", "status", "ms", "tenant"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)


_access = logging.getLogger("offerwise.access")
# Successful requests are logged only on request: at thousands of requests per second the log
# line costs more than the request itself. Errors are always logged.
ACCESS_LOG = os.environ.get("OFFERWISE_ACCESS_LOG", "0") == "1"


class RequestIds:
    """Unique request ids without a random read per request: a random tag per process (renewed
    in each forked worker) and a counter."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._tag = f"{os.getpid():x}{os.urandom(4).hex()}"
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._tag}-{next(self._count):x}"


_request_ids = RequestIds()


def request_id(incoming: str) -> str:
    """The caller's X-Request-ID when it is sane (so ids follow a request across services),
    else a new one."""
    return incoming if 0 < len(incoming) <= 64 and incoming.isascii() else _request_ids.new()


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(
    endpoint: str,
    method: str,
    path: str,
    status: int,
    elapsed: float,
    rid: str,
    tenant: str | None,
) -> None:
    """Metrics for one answered request, and its access-log line when it failed or when
    access logging is on; shared by the Flask hooks and app.fast_lane."""
    # Any token is a valid HTTP method: unknown ones share a label (bounded cardinality).
    REQUESTS_BY(endpoint, method if method in _METHODS else "OTHER", str(status)).inc()
    LATENCY_BY(endpoint).observe(elapsed)
    if status >= 400 or ACCESS_LOG:
        _access.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "request",
            extra={
                "request_id": rid or None,
                "method": method,
                "path": path,
                "status": status,
                "ms": round(elapsed * 1000, 2),
                "tenant": tenant,
            },
        )


def instrument(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("t0", time.perf_counter())
        req = request._get_current_object()
        rid = g.get("request_id", "")
        observe_request(
            req.url_rule.rule if req.url_rule else "unmatched",
            req.method,
            req.path,
            response.status_code,
            elapsed,
            rid,
            g.get("tenant_name"),
        )
        response.headers["X-Request-ID"] = rid
        return response


TENANT_LABEL = "tenant"
# Sample values that add up over tenants; a gauge or an info need not, so theirs are left out.
_ADDITIVE = frozenset({"counter", "histogram", "summary"})


class TenantsSummed(Collector):
    """``source``'s metrics with the tenant label summed away."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            if not any(TENANT_LABEL in sample.labels for sample in family.samples):
                yield family
            elif family.type in _ADDITIVE:
                yield _summed(family)

    def describe(self) -> Iterable[Metric]:
        return []


def _summed(family: Metric) -> Metric:
    totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in family.samples:
        labels = tuple((k, v) for k, v in sample.labels.items() if k != TENANT_LABEL)
        key = (sample.name, labels)
        if key not in totals:
            totals[key] = sample.value
        elif sample.name.endswith("_created"):  # a time, not a count: the earliest
            totals[key] = min(totals[key], sample.value)
        else:
            totals[key] += sample.value
    summed = Metric(family.name, family.documentation, family.type, family.unit)
    for (name, labels), value in totals.items():
        summed.add_sample(name, dict(labels), value)
    return summed


def _sees_tenants() -> bool:
    """True for the metrics token; False without one (or with no token configured); a wrong
    token is a 401, so a misconfigured scraper fails loudly instead of seeing totals only."""
    expected = current_app.config["OFFERWISE_SETTINGS"].metrics_token
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not sent.strip():
        return False
    if hmac.compare_digest(sent.strip().encode(), expected.encode()):
        return True
    abort(
        401,
        message="Authorization: wrong metrics token (OFFERWISE_METRICS_TOKEN)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _process_metrics() -> Collector:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_mp.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_response(tenant_series: Collector | None = None) -> Response:
    """The process metrics; ``tenant_series``' too (computed only then) for the token."""
    source = _process_metrics()
    sees = _sees_tenants()
    if not sees:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TenantsSummed(source))
        source = registry
    body = generate_latest(source)
    if sees and tenant_series is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(tenant_series)
        body += generate_latest(extra)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def count_campaign_events(
    tenant: str, accepted: list[dict], claims: dict, moved: list[str]
) -> None:
    """The live campaign and model monitoring series: responses by campaign and group, and by
    model version and score decile (the per-tenant series /metrics shows with its token)."""
    for event in accepted:
        claim = claims.get(event["id"])
        if claim is None or event.get("unverified"):
            continue
        what = "impression" if event["type"] == "offer_impression" else "click"
        if claim.campaign_id:
            CAMPAIGN_EVENTS.labels(tenant, claim.campaign_id, claim.group or "", what).inc()
        if claim.model_version and claim.decile:
            MODEL_OFFER_EVENTS.labels(tenant, claim.model_version, str(claim.decile), what).inc()
    for entry in moved:
        campaign, group, what = entry.split("|")
        if what == "conversion":
            CAMPAIGN_EVENTS.labels(tenant, campaign, group, "conversion").inc()
