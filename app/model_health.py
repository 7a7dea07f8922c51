"""``/metrics``' model health series: each champion's feature drift and live calibration.

Computed at scrape time from the shared Redis counters (models.drift, campaigns.measure), so
every worker reports the same numbers and the serving path keeps no gauge. Labelled by tenant,
so ``/metrics`` adds them only for callers with the metrics token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import redis
from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from campaigns.report import model_monitor
from models import drift, registry
from store.config import Settings
from store.tenants import list_tenants


class ModelHealth(Collector):
    def __init__(self, r: redis.Redis, settings: Settings) -> None:
        self._r = r
        self._settings = settings

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        psi = GaugeMetricFamily(
            "offerwise_model_feature_psi",
            "Population stability index of a live feature against the champion's training "
            "data (identified visitors, or all traffic); above 0.25: shifted",
            labels=["tenant", "model_version", "population", "feature"],
        )
        samples = GaugeMetricFamily(
            "offerwise_model_drift_samples",
            "Live feature vectors sampled for drift (1 in models.drift.SAMPLE_EVERY requests)",
            labels=["tenant", "model_version", "population"],
        )
        predicted = GaugeMetricFamily(
            "offerwise_model_calibration_predicted",
            "Mean predicted score of the champion's offers by score decile (1: top 10%)",
            labels=["tenant", "model_version", "decile"],
        )
        observed = GaugeMetricFamily(
            "offerwise_model_calibration_observed",
            "Observed response of the champion's offers by score decile, per impression",
            labels=["tenant", "model_version", "decile", "measure"],
        )
        for tenant in list_tenants(self._r):
            version = registry.champion(self._r, tenant.name)
            if version is None:
                continue
            folder = registry.version_dir(self._settings, tenant.name, version)
            responses = model_monitor(self._r, tenant.name, version)
            report = drift.live_report(self._r, folder, tenant.name, version, responses)
            labels = [tenant.name, version]
            shift = report["drift"]
            for population in ("identified", "all") if shift else ():
                part = shift[population]
                samples.add_metric([*labels, population], part["samples"])
                for row in part["features"]:
                    psi.add_metric([*labels, population, row["feature"]], row["psi"])
            for row in cast(list[dict], report["calibration"]["by_decile"]):
                decile = [*labels, str(row["decile"])]
                if row["predicted"] is not None:
                    predicted.add_metric(decile, row["predicted"])
                for measure in ("click_through", "conversion_rate"):
                    if row[measure] is not None:
                        observed.add_metric([*decile, measure], row[measure])
        yield from (psi, samples, predicted, observed)
