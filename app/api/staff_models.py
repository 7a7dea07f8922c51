"""Provider staff: model versions, promotion, rollback, background jobs."""

from __future__ import annotations

from flask import request
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from app import api_schemas as bodies
from app.api_docs import ok
from app.auth import require_staff
from app.jobs import enqueue, job_status, retrain_erased_job, train_job
from app.request_body import Blueprint
from app.services import services
from campaigns.report import model_monitor
from clickstream.schemas import ID_VALIDATORS
from models import drift, registry
from models.training import TrainingResult, comparison, gains_curves
from store.tenants import get_tenant

blp = Blueprint(
    "staff_models",
    __name__,
    url_prefix="/v1/staff",
    description="Provider staff: models (staff token)",
)


def _tenant(name: str) -> None:
    require_staff()
    if get_tenant(services().redis, name) is None:
        abort(404, message=f"tenant: no tenant named {name!r}")


@blp.route("/tenants/<string:name>/models")
@blp.doc(summary="Model versions of a tenant, newest first")
@blp.doc(responses=ok(bodies.ModelVersionsSchema))
def versions(name: str):
    _tenant(name)
    return {
        "tenant": name,
        "champion": registry.champion(services().redis, name),
        "versions": registry.list_versions(services().redis, name),
    }


@blp.route("/tenants/<string:name>/models/<string:version>/promote", methods=["POST"])
@blp.doc(summary="Make a version the champion")
@blp.doc(responses=ok(bodies.ChampionChangeSchema))
def promote(name: str, version: str):
    _tenant(name)
    return registry.promote(services().redis, name, version, "staff")


@blp.route("/tenants/<string:name>/models/rollback", methods=["POST"])
@blp.doc(summary="Go back to the previous champion")
@blp.doc(responses=ok(bodies.ChampionChangeSchema))
def rollback(name: str):
    _tenant(name)
    return registry.rollback(services().redis, name)


@blp.route("/tenants/<string:name>/models/retrain-erased", methods=["POST"])
@blp.doc(
    summary="Retrain without the erased: a new version replaces those trained on people since "
    "erased (202 + job id)"
)
@blp.alt_response(
    202, schema=bodies.JobQueuedSchema, description="Queued: poll /v1/staff/jobs/{id}"
)
def retrain_erased(name: str):
    _tenant(name)
    job_id = enqueue(
        services().queue_redis,
        retrain_erased_job,
        name,
        meta={"tenant": name, "kind": "retrain-erased"},
    )
    return {"job": job_id, "status": "queued"}, 202


@blp.route("/jobs/<string:job_id>")
@blp.doc(summary="Status of a background job")
@blp.doc(responses=ok(bodies.JobSchema))
def job(job_id: str):
    require_staff()
    return job_status(services().queue_redis, job_id)


class TrainSchema(Schema):
    products = fields.List(
        fields.String(validate=ID_VALIDATORS),
        load_default=None,
        validate=validate.Length(min=1, max=1000),
    )
    label_source = fields.String(
        load_default="holdings", validate=validate.OneOf(["holdings", "purchases", "both"])
    )


@blp.route("/tenants/<string:name>/train", methods=["POST"])
@blp.doc(summary="Train a new model version in the background (202 + job id)")
@blp.arguments(TrainSchema)
@blp.alt_response(
    202, schema=bodies.JobQueuedSchema, description="Queued: poll /v1/staff/jobs/{id}"
)
def train(body: dict, name: str):
    _tenant(name)
    job_id = enqueue(
        services().queue_redis,
        train_job,
        name,
        body["products"],
        body["label_source"],
        meta={"tenant": name, "kind": "train"},
    )
    return {"job": job_id, "status": "queued"}, 202


@blp.route("/tenants/<string:name>/evaluation")
@blp.doc(
    summary="Evaluation of a version (default: the champion): holdout figures of XGBoost and "
    "baselines side by side, drift of live features from training (PSI per feature) and live "
    "calibration by score decile; cumulative gains curves of each candidate"
)
@blp.doc(
    responses=ok(bodies.ModelEvaluationSchema, "Holdout figures, gains, live drift and calibration")
)
def evaluation(name: str):
    _tenant(name)
    r = services().redis
    version = request.args.get("version") or registry.champion(r, name)
    if version is None:
        abort(404, message="version: this tenant has no model yet")
    try:
        folder = registry.version_dir(services().settings, name, version)
        result = TrainingResult.load(folder)
    except (OSError, ValueError):
        abort(404, message=f"version: no readable model version {version!r}")
    live = drift.live_report(r, folder, name, version, model_monitor(r, name, version))
    return {
        "tenant": name,
        "version": version,
        "products": comparison(result),
        "gains": gains_curves(result),
        **live,
    }
