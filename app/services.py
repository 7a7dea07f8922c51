"""The per-process objects the routes use, created lazily after gunicorn forks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import redis
from flask import Flask, current_app

from app.observability import MODEL_LOAD_FAILURES
from campaigns.measure import CampaignEvents
from campaigns.offers import Recommender
from clickstream.catalog import CatalogCache
from clickstream.ingest import Ingestor
from models.bundle import load_bundle
from models.serving import ChampionCache
from store.config import Settings
from store.redis_client import get_redis, queue_redis
from store.tenants import KeyResolver


@dataclass
class Services:
    settings: Settings
    pid: int

    @cached_property
    def redis(self) -> redis.Redis:
        return get_redis(self.settings)

    @cached_property
    def queue_redis(self) -> redis.Redis:
        """The job queue's connection: rq stores pickled bytes, so responses stay undecoded."""
        return queue_redis(self.settings)

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.redis, self.settings.wait_replicas, self.settings.wait_timeout_ms)

    @cached_property
    def campaign_events(self) -> CampaignEvents:
        return CampaignEvents()

    @cached_property
    def keys(self) -> KeyResolver:
        return KeyResolver()

    @cached_property
    def catalogs(self) -> CatalogCache:
        return CatalogCache()

    @cached_property
    def recommender(self) -> Recommender:
        champions = ChampionCache(
            lambda tenant, version: load_bundle(self.settings, tenant, version),
            on_load_failure=lambda tenant, _version: MODEL_LOAD_FAILURES.labels(tenant).inc(),
        )
        return Recommender(self.settings, self.catalogs, champions)


def services() -> Services:
    """This process's services; rebuilt after a fork so no connection is shared across workers."""
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    current: Services | None = app.extensions.get("offerwise")
    if current is None or current.pid != os.getpid():
        current = Services(app.config["OFFERWISE_SETTINGS"], os.getpid())
        app.extensions["offerwise"] = current
    return current
