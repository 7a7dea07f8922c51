"""Tenant admin API (admin key): tenant settings, catalog, event counters."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app import api_schemas as bodies
from app.api_docs import BINARY_FILE, ok
from app.auth import admin_tenant
from app.request_body import Blueprint
from app.services import services
from campaigns.rules import RulesSchema, load_rules, save_rules
from clickstream import catalog
from clickstream.stats import daily_counts

blp = Blueprint(
    "admin", __name__, url_prefix="/v1/admin", description="Tenant administration (admin key)"
)


class CatalogReportSchema(Schema):
    version = fields.Integer(allow_none=True)
    rows_read = fields.Integer()
    rows_imported = fields.Integer()
    rows_rejected = fields.Integer()
    errors = fields.List(
        fields.Dict(), metadata={"description": "Up to 100 of {row, column, reason}."}
    )


class CatalogPageArgs(Schema):
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class CatalogUploadArgs(Schema):
    check = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Validate only: the report of what this upload would import "
            "(version null), the catalog unchanged."
        },
    )


class StatsArgs(Schema):
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=90))


@blp.route("/tenant")
@blp.doc(summary="This tenant's settings")
@blp.doc(responses=ok(bodies.TenantSchema))
def tenant_info():
    return admin_tenant().public()


@blp.route("/catalog")
class Catalog(MethodView):
    @blp.doc(
        summary="Replace the product catalog",
        description=(
            f"CSV (header: {','.join(catalog.COLUMNS)}; margin, url, image_url and active optional) "
            f'or JSON (a list of products or {{"products": [...]}}). At most {catalog.MAX_PRODUCTS} '
            f"products and {catalog.MAX_UPLOAD_BYTES} bytes. Bad rows are reported (row, column, "
            "reason) and the good rows replace the whole catalog atomically; an upload with no good "
            "row changes nothing (422)."
        ),
        requestBody={
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                # A bare list of products is accepted too; documented as the object so that
                # generated clients can tell the JSON body from the file.
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["products"],
                        "properties": {"products": {"type": "array", "items": {"type": "object"}}},
                    }
                },
                "application/octet-stream": BINARY_FILE,
            },
        },
    )
    @blp.arguments(CatalogUploadArgs, location="query", as_kwargs=True)
    @blp.response(200, CatalogReportSchema)
    @blp.alt_response(422, description="Nothing usable in the upload; the catalog is unchanged")
    def put(self, check: bool):
        tenant = admin_tenant()
        report = catalog.parse_upload(request.get_data(cache=False), request.content_type)
        if check:
            return report.as_dict(None)
        version = catalog.replace_catalog(services().redis, tenant.name, report.products)
        return report.as_dict(version)

    @blp.doc(summary="Read the catalog, a page at a time")
    @blp.arguments(CatalogPageArgs, location="query", as_kwargs=True)
    @blp.doc(responses=ok(bodies.CatalogPageSchema))
    def get(self, offset: int, limit: int):
        tenant = admin_tenant()
        version, products = catalog.load_catalog(services().redis, tenant.name)
        ordered = [products[k] for k in sorted(products)]
        return {
            "version": version,
            "total": len(ordered),
            "products": ordered[offset : offset + limit],
        }


@blp.route("/stats")
@blp.doc(summary="Events collected per UTC day and type")
@blp.arguments(StatsArgs, location="query", as_kwargs=True)
@blp.doc(responses=ok(bodies.DailyStatsSchema))
def stats(days: int):
    tenant = admin_tenant()
    return {"tenant": tenant.name, "days": daily_counts(services().redis, tenant.name, days)}


@blp.route("/rules")
class Rules(MethodView):
    @blp.doc(summary="This tenant's offer rules")
    @blp.doc(responses=ok(RulesSchema))
    def get(self):
        tenant = admin_tenant()
        return load_rules(services().redis, tenant.name)

    @blp.doc(
        summary="Replace the offer rules",
        description=(
            "weight (margin|price|none), max_per_category, pinned product ids, and per product: "
            "segments, states, audience (all|identified|anonymous), priority. Body at most 16 KiB."
        ),
    )
    @blp.arguments(RulesSchema)
    @blp.doc(responses=ok(RulesSchema, "The rules as saved"))
    def put(self, body: dict):
        tenant = admin_tenant()
        return save_rules(services().redis, tenant.name, body)
