"""What the admin dashboard shows that no other endpoint answers (admin key, read-only): the
traffic overview, the segment map, and the tenant's model versions with their holdout figures."""

from __future__ import annotations

from flask_smorest import abort
from marshmallow import Schema, fields, validate

from app import api_schemas as bodies
from app.api_docs import ok
from app.auth import admin_tenant
from app.request_body import Blueprint
from app.services import services
from clickstream.stats import daily_counts, traffic_overview
from enrichment.segments import MAP_MAX_POINTS, list_segments, segment_map
from models import registry
from models.training import TrainingResult, comparison, gains_curves

blp = Blueprint(
    "overview",
    __name__,
    url_prefix="/v1/admin",
    description="Dashboard data (admin key, read-only): overview, segment map, models",
)

MAX_MINUTES = 24 * 60
MAX_DAYS = 8  # the visitor and segment counters are kept eight days (clickstream.ingest)


class OverviewArgs(Schema):
    minutes = fields.Integer(load_default=60, validate=validate.Range(min=1, max=MAX_MINUTES))
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=MAX_DAYS))


class MinuteSchema(Schema):
    minute = fields.Integer(metadata={"description": "Start of the UTC minute (Unix seconds)"})
    events = fields.Integer()
    impressions = fields.Integer(metadata={"description": "Offers seen (offer_impression)"})


class SegmentCountSchema(Schema):
    segment = fields.Integer()
    label = fields.String(allow_none=True)
    events = fields.Integer()


class DaySchema(Schema):
    date = fields.String()
    visitors = fields.Integer(metadata={"description": "Distinct tracked visitors (estimate)"})
    identified = fields.Integer(metadata={"description": "Of those, seen logged in (estimate)"})
    identified_share = fields.Float(allow_none=True)
    segments = fields.List(fields.Nested(SegmentCountSchema))


class TodaySchema(Schema):
    events = fields.Integer()
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer())


class OverviewSchema(Schema):
    tenant = fields.String()
    minutes = fields.List(fields.Nested(MinuteSchema), metadata={"description": "Oldest first"})
    days = fields.List(fields.Nested(DaySchema), metadata={"description": "Today first"})
    today = fields.Nested(TodaySchema)


@blp.route("/overview")
@blp.doc(
    summary="Traffic overview: events and offer impressions per minute, visitors, identified "
    "share and top ZIP segments per day, today's events by type",
    description=f"At most {MAX_MINUTES} minutes and {MAX_DAYS} days (counters are kept two days "
    "per minute and eight days per day). Visitor counts are HyperLogLog estimates; visitors "
    "under Do-Not-Track or GPC are counted in events only.",
)
@blp.arguments(OverviewArgs, location="query", as_kwargs=True)
@blp.doc(responses=ok(OverviewSchema))
def overview(minutes: int, days: int):
    tenant = admin_tenant()
    here = services()
    found = traffic_overview(here.redis, tenant.name, minutes=minutes, days=days)
    labels = {int(s["id"]): s.get("label") for s in list_segments(here.settings)}
    for day in found["days"]:
        for entry in day["segments"]:
            entry["label"] = labels.get(entry["segment"])
    today = daily_counts(here.redis, tenant.name, 1)[0]
    return {"tenant": tenant.name, **found, "today": today}


class MapArgs(Schema):
    limit = fields.Integer(load_default=4000, validate=validate.Range(min=1, max=MAP_MAX_POINTS))


class SegmentMapSchema(Schema):
    version = fields.String(allow_none=True, metadata={"description": "Segmentation version"})
    total = fields.Integer(metadata={"description": "ZIPs with a centroid and a segment"})
    points = fields.List(
        fields.List(fields.Raw()),
        metadata={"description": "[zip, latitude, longitude, segment id], an even sample"},
    )


@blp.route("/segments/map")
@blp.doc(
    summary="ZIP centroids with their segment, for a map-like scatter",
    description=f"An even sample of at most `limit` (1..{MAP_MAX_POINTS}) US ZIPs.",
)
@blp.arguments(MapArgs, location="query", as_kwargs=True)
@blp.doc(responses=ok(SegmentMapSchema))
def segments_map(limit: int):
    admin_tenant()
    return segment_map(services().settings, limit)


@blp.route("/models")
@blp.doc(summary="This tenant's model versions, newest first, and the champion")
@blp.doc(responses=ok(bodies.ModelVersionsSchema))
def models():
    tenant = admin_tenant()
    r = services().redis
    return {
        "tenant": tenant.name,
        "champion": registry.champion(r, tenant.name),
        "versions": registry.list_versions(r, tenant.name),
    }


class EvaluationArgs(Schema):
    version = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


def model_evaluation(tenant: str, version: str | None) -> dict:
    """Holdout figures and gains curves of ``version`` (default: the champion); 404 if none."""
    here = services()
    version = version or registry.champion(here.redis, tenant)
    if version is None:
        abort(404, message="version: this tenant has no model yet")
    try:
        # Inside the try: a version that cannot be a file name (a NUL, '..') is a 404 too.
        result = TrainingResult.load(registry.version_dir(here.settings, tenant, version))
    except (OSError, ValueError):
        abort(404, message=f"version: no readable model version {version!r}")
    return {
        "tenant": tenant,
        "version": version,
        "products": comparison(result),
        "gains": gains_curves(result),
    }


@blp.route("/models/evaluation")
@blp.doc(summary="Holdout figures and cumulative gains of a model version (default: the champion)")
@blp.arguments(EvaluationArgs, location="query", as_kwargs=True)
@blp.doc(responses=ok(bodies.ModelEvaluationSchema))
@blp.alt_response(404, description="No such version, or no model yet")
def evaluation(version: str | None):
    tenant = admin_tenant()
    return model_evaluation(tenant.name, version)
