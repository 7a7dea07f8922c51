"""Business rules of a tenant's offers, set by its admin: weights, eligibility, diversity, pins."""

from __future__ import annotations

import threading

import orjson
import redis
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from store import keys

WEIGHTS = ("margin", "price", "none")
AUDIENCES = ("all", "identified", "anonymous")


class StrictFloat(fields.Float):
    """A JSON number only: marshmallow's Float also takes "2" and True, which let a mistyped
    rules body through as if it were right."""

    def _validated(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._validated(value)


class ProductRuleSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt rule is refused by name, not silently dropped

    segments = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0, max=10_000)),
        validate=validate.Length(max=200),
        metadata={"description": "Offer only to visitors in these ZIP segments."},
    )
    states = fields.List(
        fields.String(validate=validate.Length(equal=2)),
        validate=validate.Length(max=100),
        metadata={"description": "Offer only to visitors whose ZIP is in these states."},
    )
    audience = fields.String(load_default="all", validate=validate.OneOf(AUDIENCES))
    priority = StrictFloat(
        load_default=1.0,
        validate=validate.Range(min=0, max=1000),
        metadata={"description": "Multiplies the expected value."},
    )


class RulesSchema(Schema):
    class Meta:
        unknown = RAISE  # a misspelt rule is refused by name, not silently dropped

    weight = fields.String(
        load_default="margin",
        validate=validate.OneOf(WEIGHTS),
        metadata={
            "description": "Expected value = calibrated score x this product field (margin falls back to price)."
        },
    )
    max_per_category = fields.Integer(
        strict=True, load_default=2, validate=validate.Range(min=1, max=50)
    )
    pinned = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        load_default=list,
        validate=validate.Length(max=10),
        metadata={"description": "Always offered first when eligible."},
    )
    products = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=fields.Nested(ProductRuleSchema),
        load_default=dict,
        validate=validate.Length(max=100_000),
    )


_schema = RulesSchema()
DEFAULT_RULES = _schema.load({})


# Named in store.keys; kept here under the names callers import.
rules_key = keys.offer_rules
rules_version_key = keys.offer_rules_version


def save_rules(r: redis.Redis, tenant: str, payload: object) -> dict:
    """Validate and store; raises marshmallow.ValidationError naming the field."""
    if not isinstance(payload, dict):
        raise ValidationError("must be an object", field_name="_body")
    rules = _schema.load(payload)
    pipe = r.pipeline(transaction=True)
    pipe.set(rules_key(tenant), orjson.dumps(rules))
    pipe.incr(rules_version_key(tenant))
    pipe.execute()
    return rules


def load_rules(r: redis.Redis, tenant: str) -> dict:
    raw = r.get(rules_key(tenant))
    return orjson.loads(raw) if raw else dict(DEFAULT_RULES)


class RulesCache:
    """Per-process rules, reloaded when the version (read in the serving pipeline) moves."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, dict]] = {}
        self._lock = threading.Lock()

    def get(self, r: redis.Redis, tenant: str, version: int) -> dict:
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] == version:
            return hit[1]
        rules = load_rules(r, tenant)
        with self._lock:
            self._cache[tenant] = (version, rules)
        return rules
