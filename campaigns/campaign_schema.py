"""Wire schema of a campaign definition: every field, its limits, and what each needs.

Checks that need the tenant's data (does the product exist, is the segment known) are made by
``campaigns.definitions``; this module checks shape and ranges only.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from clickstream.schemas import ID_VALIDATORS

DEFAULT_CONTROL_SHARE = 0.1
MAX_CONTROL_SHARE = 0.9
DEFAULT_ATTRIBUTION_DAYS = 7
DEFAULT_TRIGGER_MINUTES = 60
CHANNELS = ("web", "email", "direct_mail", "call_centre")
VISITORS = ("all", "identified", "anonymous")
CRM_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in")
TRIGGERS = ("first_identify", "purchase", "cart_abandon", "segment_enter")
# What a trigger needs besides its kind.
TRIGGER_NEEDS = {
    "purchase": ("product_id",),
    "cart_abandon": ("product_id", "minutes"),
    "segment_enter": ("segments",),
}


class ContentOfferSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=ID_VALIDATORS)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    url = fields.Url(required=True, schemes={"http", "https"})
    image_url = fields.Url(schemes={"http", "https"}, allow_none=True)


class CampaignOfferSchema(Schema):
    class Meta:
        unknown = RAISE

    product_id = fields.String(validate=ID_VALIDATORS)
    content = fields.Nested(ContentOfferSchema)

    @validates_schema
    def _one(self, data: dict, **_: object) -> None:
        if ("product_id" in data) == ("content" in data):
            raise ValidationError("give product_id or content, not both", field_name="offer")


class CrmFilterSchema(Schema):
    class Meta:
        unknown = RAISE

    attribute = fields.String(required=True, validate=validate.Length(min=1, max=64))
    op = fields.String(load_default="eq", validate=validate.OneOf(CRM_OPS))
    value = fields.Raw(required=True)

    @validates_schema
    def _value(self, data: dict, **_: object) -> None:
        value = data.get("value")
        if data.get("op") == "in":
            if not isinstance(value, list) or not 1 <= len(value) <= 100:
                raise ValidationError("must be a list of 1 to 100 values for op in", "value")
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValidationError("must be a string or a number", field_name="value")


class ScoreAudienceSchema(Schema):
    class Meta:
        unknown = RAISE

    product_id = fields.String(required=True, validate=ID_VALIDATORS)
    min = fields.Float(validate=validate.Range(min=0, max=1), allow_nan=False)
    top_share = fields.Float(
        validate=validate.Range(min=0, max=1, min_inclusive=False), allow_nan=False
    )

    @validates_schema
    def _one(self, data: dict, **_: object) -> None:
        if ("min" in data) == ("top_share" in data):
            raise ValidationError("give min or top_share, not both", field_name="score")


class TriggerSchema(Schema):
    class Meta:
        unknown = RAISE

    on = fields.String(required=True, validate=validate.OneOf(TRIGGERS))
    product_id = fields.String(validate=ID_VALIDATORS)
    minutes = fields.Integer(strict=True, validate=validate.Range(min=1, max=7 * 24 * 60))
    segments = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000)),
        validate=validate.Length(min=1, max=200),
    )
    active_minutes = fields.Integer(
        strict=True,
        load_default=DEFAULT_TRIGGER_MINUTES,
        validate=validate.Range(min=1, max=30 * 24 * 60),
        metadata={"description": "How long the offer stays for the visitor once triggered."},
    )

    @validates_schema
    def _needs(self, data: dict, **_: object) -> None:
        for name in TRIGGER_NEEDS.get(data.get("on", ""), ()):
            if name not in data:
                raise ValidationError(f"required for {data['on']} triggers", field_name=name)


class AudienceSchema(Schema):
    class Meta:
        unknown = RAISE

    segments = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000)),
        validate=validate.Length(min=1, max=200),
    )
    states = fields.List(
        fields.String(validate=validate.Regexp(r"^[A-Za-z]{2}$", error="a 2-letter state")),
        validate=validate.Length(min=1, max=100),
    )
    visitors = fields.String(load_default="all", validate=validate.OneOf(VISITORS))
    crm = fields.List(fields.Nested(CrmFilterSchema), validate=validate.Length(min=1, max=20))
    score = fields.Nested(ScoreAudienceSchema)
    trigger = fields.Nested(TriggerSchema)


class ChannelSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(load_default="web", validate=validate.OneOf(CHANNELS))
    placement = fields.String(
        validate=validate.Length(min=1, max=64),
        allow_none=True,
        metadata={"description": "Web only: the placement it fills (none: every placement)."},
    )


def _money(**kwargs: Any) -> fields.Float:
    return fields.Float(validate=validate.Range(min=0, max=1e9), allow_nan=False, **kwargs)


class CampaignSchema(Schema):
    """A new campaign (POST) or, with ``partial=True``, the fields an update changes."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    offer = fields.Nested(CampaignOfferSchema, required=True)
    audience = fields.Nested(AudienceSchema, load_default=dict)
    channel = fields.Nested(ChannelSchema, load_default=dict)
    start = fields.AwareDateTime(
        allow_none=True, load_default=None, default_timezone=UTC, format="iso"
    )
    end = fields.AwareDateTime(allow_none=True, load_default=None, default_timezone=UTC)
    cost_per_contact = _money(load_default=0.0)
    value_per_conversion = _money(load_default=None, allow_none=True)
    control_share = fields.Float(
        load_default=DEFAULT_CONTROL_SHARE,
        validate=validate.Range(min=0, max=MAX_CONTROL_SHARE),
        allow_nan=False,
    )
    priority = fields.Integer(strict=True, load_default=0, validate=validate.Range(-1000, 1000))
    planned_people = fields.Integer(
        strict=True,
        load_default=10_000,
        validate=validate.Range(1, 100_000_000),
        metadata={
            "description": "People per group the report's always-valid interval is tuned for; "
            "fixed at the start (a wrong guess widens the interval, never invalidates it)."
        },
    )
    attribution_days = fields.Integer(
        strict=True, load_default=DEFAULT_ATTRIBUTION_DAYS, validate=validate.Range(1, 90)
    )

    @validates_schema
    def _schedule(self, data: dict, **_: object) -> None:
        start, end = data.get("start"), data.get("end")
        if start is not None and end is not None and end <= start:
            raise ValidationError("must be after start", field_name="end")


CREATE = CampaignSchema()
UPDATE = CampaignSchema(partial=True)
