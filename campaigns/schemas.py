"""Wire schemas of the recommendation endpoint."""

from __future__ import annotations

from collections.abc import Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from clickstream.schemas import ID_VALIDATORS, fast_id
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
    placement = fields.String(
        validate=_id,
        metadata={"description": "The page slot asking (campaigns may target one placement)."},
    )
    n = fields.Integer(load_default=3, validate=validate.Range(min=1, max=MAX_OFFERS))
    explain = fields.Boolean(
        load_default=False,
        metadata={"description": "Add the top features behind each model score (slower)."},
    )
    dnt = fields.Boolean(
        load_default=False,
        metadata={"description": "Visitor signals DNT/GPC: contextual offers, no profile."},
    )
    # Schema's own ``exclude`` is an instance attribute; marshmallow's metaclass moves declared
    # fields off the class, so they do not collide (its types cannot say so).
    exclude = fields.List(  # type: ignore[assignment]
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


_FAST_KEYS = frozenset({"site", "visitor", "n", "placement"})
_N_TEXT = {str(i): i for i in range(1, MAX_OFFERS + 1)}


def fast_recommend_args(query: Mapping[str, str]) -> dict | None:
    """The everyday query (site, visitor, n) checked without marshmallow, which costs more
    than ranking the offers; None when anything else is there and the schema must decide.
    Property-tested to agree with ``RecommendArgsSchema`` wherever it answers."""
    if not query.keys() <= _FAST_KEYS:
        return None
    getlist = getattr(query, "getlist", None)
    if getlist is not None and any(len(getlist(k)) != 1 for k in query):
        return None
    visitor, site = query.get("visitor"), query.get("site")
    n = _N_TEXT.get(query.get("n", "3"))
    if n is None or not fast_id(visitor):
        return None
    out: dict = {"visitor": visitor, "n": n, "explain": False, "dnt": False, "exclude": []}
    placement = query.get("placement")
    if placement is not None:
        if not fast_id(placement):
            return None
        out["placement"] = placement
    if site is not None:
        if not 0 < len(site) <= 128:
            return None
        out["site"] = site
    return out


class OfferSchema(Schema):
    product_id = fields.String()
    name = fields.String()
    category = fields.String()
    price = fields.Float(allow_none=True, metadata={"description": "None for a content offer."})
    url = fields.String(allow_none=True)
    image_url = fields.String(allow_none=True)
    score = fields.Float()
    reason = fields.String()
    reason_code = fields.String()
    campaign = fields.String(
        metadata={"description": "The campaign that placed this offer, when one did."}
    )
    token = fields.String(
        metadata={"description": "Send back with offer_impression/offer_click events."}
    )


class RecommendResultSchema(Schema):
    offers = fields.List(fields.Nested(OfferSchema))
    source = fields.String(
        metadata={"description": "What ranked the offers (popularity, model version...)."}
    )
    profile = fields.Boolean()
    degraded = fields.Boolean(
        metadata={
            "description": "Present and true when the store was unreachable: the offers are "
            "this server's last copy of the tenant's popularity, not personalised."
        }
    )
    explanations = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Dict()),
        metadata={"description": "With explain=1: product id -> [{feature, contribution}]."},
    )
