"""Provider staff API (OFFERWISE_STAFF_TOKEN): tenants and their keys."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from app import api_schemas as bodies
from app.api_docs import ok
from app.auth import require_staff
from app.request_body import Blueprint
from app.services import services
from store import tenants

blp = Blueprint(
    "staff", __name__, url_prefix="/v1/staff", description="Provider staff (staff token)"
)


class NewTenantSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=2, max=48))
    origins = fields.List(
        fields.String(validate=validate.Length(max=256)),
        load_default=list,
        validate=validate.Length(max=50),
    )
    rate_limit = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=1_000_000)
    )


class TenantPatchSchema(Schema):
    origins = fields.List(
        fields.String(validate=validate.Length(max=256)), validate=validate.Length(max=50)
    )
    rate_limit = fields.Integer(validate=validate.Range(min=1, max=1_000_000))
    holdout_share = fields.Float(
        validate=validate.Range(min=0, max=tenants.MAX_HOLDOUT_SHARE),
        allow_nan=False,
        metadata={"description": "Share of people served popularity only (default 0.05)."},
    )


class TenantKeysSchema(Schema):
    tenant = fields.String()
    site_key = fields.String()
    admin_key = fields.String()


class NewTenantKeysSchema(TenantKeysSchema):
    warnings = fields.List(
        fields.String(), metadata={"description": "What the tenant cannot do yet, and the fix"}
    )


def _no_origin_warning(name: str) -> str:
    # Browser calls always send an Origin, and a tenant with none allowed refuses them all (403).
    return (
        f"tenant {name!r} has no allowed origin, so every browser call with its site key will be "
        f"refused (403); allow the shop's with PATCH /v1/staff/tenants/{name} "
        '{"origins": ["https://..."]}'
    )


@blp.route("/tenants")
class Tenants(MethodView):
    @blp.doc(summary="List tenants")
    @blp.doc(responses=ok(bodies.TenantListSchema))
    def get(self):
        require_staff()
        return {"tenants": [t.public() for t in tenants.list_tenants(services().redis)]}

    @blp.doc(summary="Create a tenant; the keys are shown only in this response")
    @blp.arguments(NewTenantSchema)
    @blp.response(201, NewTenantKeysSchema)
    @blp.alt_response(409, description="A tenant with this name exists")
    def post(self, body: dict):
        require_staff()
        created = tenants.create_tenant(
            services().redis, body["name"], body["origins"], body["rate_limit"]
        )
        return {
            **created,
            "warnings": [] if body["origins"] else [_no_origin_warning(body["name"])],
        }


@blp.route("/tenants/<string:name>")
class TenantOne(MethodView):
    @blp.doc(summary="Change a tenant's origins, rate limit or holdout share")
    @blp.arguments(TenantPatchSchema)
    @blp.doc(responses=ok(bodies.TenantSchema, "The tenant as changed"))
    def patch(self, body: dict, name: str):
        require_staff()
        tenant = tenants.update_tenant(
            services().redis,
            name,
            body.get("origins"),
            body.get("rate_limit"),
            body.get("holdout_share"),
        )
        services().keys.clear()
        return tenant.public()


@blp.route("/tenants/<string:name>/rotate-keys", methods=["POST"])
@blp.doc(summary="Issue new keys; the old ones stop working")
@blp.response(200, TenantKeysSchema)
def rotate(name: str):
    require_staff()
    keys = tenants.rotate_keys(services().redis, name)
    services().keys.clear()
    return keys
