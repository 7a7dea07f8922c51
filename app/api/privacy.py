"""Erasure requests (admin key): remove a person everywhere and return a receipt."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import api_schemas as bodies
from app.api_docs import ok
from app.auth import admin_tenant
from app.request_body import Blueprint
from app.services import services
from clickstream.schemas import ID_VALIDATORS
from models.erasure import erase_person, list_receipts

blp = Blueprint(
    "privacy", __name__, url_prefix="/v1/admin", description="Privacy: erasure (admin key)"
)


class EraseSchema(Schema):
    customer_id = fields.String(
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Raw CRM id, as the site passes it to identify."},
    )
    visitor_id = fields.String(validate=ID_VALIDATORS)

    @validates_schema
    def _one_of(self, data: dict, **_: object) -> None:
        if not data.get("customer_id") and not data.get("visitor_id"):
            raise ValidationError("give customer_id, visitor_id or both", field_name="customer_id")


class ReceiptArgs(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


@blp.route("/erase", methods=["POST"])
@blp.doc(
    summary="Erase a customer or visitor everywhere",
    description=(
        "Removes the person from live profiles, every kept CRM version, the event stream and the "
        "Parquet archive, and lists the model versions trained while they were in the data. "
        "Returns a receipt (hashed ids only). Body at most 16 KiB."
    ),
)
@blp.arguments(EraseSchema)
@blp.alt_response(409, description="The archiver is busy; retry")
@blp.doc(responses=ok(bodies.ErasureReceiptSchema, "The erasure receipt"))
def erase(body: dict):
    tenant = admin_tenant()
    return erase_person(
        services().redis,
        services().settings,
        tenant,
        body.get("customer_id"),
        body.get("visitor_id"),
    )


@blp.route("/erasures")
class Receipts(MethodView):
    @blp.doc(summary="Erasure receipts, newest first")
    @blp.arguments(ReceiptArgs, location="query", as_kwargs=True)
    @blp.doc(responses=ok(bodies.ReceiptListSchema))
    def get(self, limit: int):
        tenant = admin_tenant()
        return {"receipts": list_receipts(services().redis, tenant.name, limit)}
