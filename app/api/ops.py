"""Operations: liveness, readiness, metrics."""

from __future__ import annotations

import redis

from app import api_schemas as bodies
from app.api_docs import ok
from app.model_health import ModelHealth
from app.observability import metrics_response
from app.request_body import Blueprint
from app.services import services

blp = Blueprint("ops", __name__, description="Health and metrics")


@blp.route("/healthz")
@blp.doc(summary="Liveness: the process answers")
@blp.doc(responses=ok(bodies.StatusSchema))
def healthz():
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(summary="Readiness: the store is reachable")
@blp.alt_response(503, description="Store unreachable")
@blp.doc(responses=ok(bodies.ReadySchema))
def readyz():
    try:
        services().redis.ping()
    except (redis.RedisError, OSError) as err:
        return {"status": "unavailable", "store": f"unreachable: {type(err).__name__}"}, 503
    return {"status": "ok", "store": "ok"}


@blp.route("/metrics")
@blp.doc(
    summary="Prometheus metrics",
    responses={
        "200": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics():
    return metrics_response(ModelHealth(services().redis, services().settings))
