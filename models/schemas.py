"""Wire schemas of the recommendation endpoint."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from clickstream.schemas import ID_VALIDATORS
from models.popularity import MAX_OFFERS

MAX_EXCLUDE = 50
_id = ID_VALIDATORS


class RecommendArgsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    site = fields.String(
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Site key (or X-Site-Key header)."},
    )
    visitor = fields.String(required=True, validate=_id)
    n = fields.Integer(load_default=3, validate=validate.Range(min=1, max=MAX_OFFERS))
    explain = fields.Boolean(
        load_default=False,
        metadata={"description": "Add the top features behind each model score (slower)."},
    )
    dnt = fields.Boolean(
        load_default=False,
        metadata={"description": "Visitor signals DNT/GPC: contextual offers, no profile."},
    )
    exclude = fields.List(
        fields.String(validate=_id),
        load_default=list,
        validate=validate.Length(max=MAX_EXCLUDE),
        metadata={
            "description": f"Product ids not to offer (e.g. the one on screen); at most {MAX_EXCLUDE}. In the query string: comma-separated."
        },
    )

    @pre_load
    def _split_exclude(self, data: object, **_: object) -> object:
        # Query strings carry a list as one comma-separated value.
        if hasattr(data, "to_dict"):
            data = data.to_dict()
        if isinstance(data, dict) and isinstance(data.get("exclude"), str):
            data = {**data, "exclude": [p for p in data["exclude"].split(",") if p]}
        if not isinstance(data, dict):
            raise ValidationError("must be an object", field_name="_body")
        return data


class OfferSchema(Schema):
    product_id = fields.String()
    name = fields.String()
    category = fields.String()
    price = fields.Float()
    url = fields.String(allow_none=True)
    image_url = fields.String(allow_none=True)
    score = fields.Float()
    reason = fields.String()
    reason_code = fields.String()
    token = fields.String(
        metadata={"description": "Send back with offer_impression/offer_click events."}
    )


class RecommendResultSchema(Schema):
    offers = fields.List(fields.Nested(OfferSchema))
    source = fields.String(
        metadata={"description": "What ranked the offers (popularity, model version...)."}
    )
    profile = fields.Boolean()
    explanations = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Dict()),
        metadata={"description": "With explain=1: product id -> [{feature, contribution}]."},
    )
