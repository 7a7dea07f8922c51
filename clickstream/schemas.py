"""Wire schemas of the collect endpoint (marshmallow), and the JSON body rules every endpoint
shares (depth limit, valid Unicode).

Each event is validated on its own so that one bad event in a batch does not cost the good ones;
the batch envelope (site, visitor, events list) is validated as a whole.
"""

from __future__ import annotations

import json
import re
import time

import orjson
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "identify",
    "zip",
    "offer_impression",
    "offer_click",
)
# The field each event type cannot do without.
REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    "product_view": ("product_id",),
    "add_to_cart": ("product_id",),
    "remove_from_cart": ("product_id",),
    "purchase": ("product_id",),
    "search": ("query",),
    "identify": ("customer_id",),
    "zip": ("zip",),
    "offer_impression": ("product_id",),
    "offer_click": ("product_id",),
}

MAX_EVENTS_PER_BATCH = 100
MAX_BODY_BYTES = 64 * 1024
ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"
MIN_TS_MS = 946_684_800_000  # 2000-01-01: anything older is a unit mistake (seconds, not ms)
MAX_CLOCK_SKEW_MS = 24 * 3600 * 1000
# Arrays and objects nested deeper than this are refused (400) on every endpoint. No endpoint
# needs more than 4; parsing and walking deeper values recursed until RecursionError (a 500).
MAX_JSON_DEPTH = 64
# A collect event sits two levels down: the batch object, then its events array.
_EVENT_DEPTH = MAX_JSON_DEPTH - 2

# JSON lets a client escape half of a UTF-16 pair ("\ud800"); the standard library's parser
# keeps it as a lone surrogate, which no UTF-8 encoder downstream (orjson, Redis, hashing,
# Parquet) accepts. A matched pair is decoded to one character, so any match here is lone.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
LONE_SURROGATE_REASON = "not valid Unicode: holds a lone UTF-16 surrogate (\\ud800-\\udfff)"


class JsonTooDeep(ValueError):
    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels (arrays and objects)")


def has_lone_surrogate(text: str) -> bool:
    # isascii() reads a flag of the string object: ASCII text, the usual case, costs no scan.
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels; level by level,
    without recursion, and only containers are kept for the next level."""
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for container in level:
            for child in container.values() if type(container) is dict else container:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
    return False


class Text(fields.String):
    """A string that is valid Unicode (no lone surrogate)."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if has_lone_surrogate(text):
            raise ValidationError(LONE_SURROGATE_REASON)
        return text


# Where a URL's query or fragment starts, literally or percent-encoded (%3F is "?", %23 "#"):
# what follows often carries emails, tokens or session ids.
_QUERY_START = re.compile(r"[?#]|%(?:3[Ff]|23)")
# user:pass@ between "scheme://" (or a scheme-relative "//") and the host.
_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)[^/]*@")
# Path parameters of each segment (";jsessionid=...").
_PATH_PARAMS = re.compile(r";[^/]*")


def clean_url(url: str) -> str:
    """Scheme, host, port and path of a URL: no credentials, path parameters, query or
    fragment. URLs without any of the characters these need (most) are returned as they are;
    five ``in`` tests cost half of what the former two splits did, a regex search more."""
    if not ("?" in url or "#" in url or "%" in url or ";" in url or "@" in url):
        return url
    end = _QUERY_START.search(url)
    if end is not None:
        url = url[: end.start()]
    url = _USERINFO.sub(r"\1", url, count=1)
    return _PATH_PARAMS.sub("", url)


# A list (not validate.And) so that apispec publishes maxLength and pattern in the OpenAPI document.
ID_VALIDATORS = [
    validate.Length(min=1, max=64),
    validate.Regexp(ID_PATTERN, error="must contain only letters, digits and . _ : -"),
]
_id = ID_VALIDATORS


class EventSchema(Schema):
    """One clickstream event. Unknown fields are ignored so that newer snippets stay compatible."""

    class Meta:
        unknown = EXCLUDE

    id = Text(
        required=True,
        validate=_id,
        metadata={"description": "Client event id; retries with the same id are deduplicated."},
    )
    type = Text(required=True, validate=validate.OneOf(EVENT_TYPES))
    ts = fields.Integer(
        strict=True,
        metadata={
            "description": "Client time, epoch milliseconds; the server's receive time when absent."
        },
    )
    product_id = Text(validate=_id)
    category = Text(validate=validate.Length(min=1, max=64))
    query = Text(validate=validate.Length(min=1, max=256))
    quantity = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    price = fields.Float(validate=validate.Range(min=0, max=10_000_000), allow_nan=False)
    value = fields.Float(validate=validate.Range(min=0, max=100_000_000), allow_nan=False)
    zip = Text(validate=validate.Length(min=2, max=16))
    country = Text(
        validate=validate.Regexp(r"^[A-Za-z]{2}$", error="must be an ISO 3166 alpha-2 code")
    )
    customer_id = Text(
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Raw CRM id; hashed with the tenant's key before storage."},
    )
    token = Text(validate=validate.Length(min=1, max=512))
    url = Text(
        validate=validate.Length(max=2048),
        metadata={
            "description": (
                "Page URL; only scheme, host, port and path are stored (no credentials, "
                "path parameters such as ;jsessionid=, query string or fragment)."
            )
        },
    )
    referrer = Text(validate=validate.Length(max=2048))
    page_type = Text(validate=validate.Length(min=1, max=32))
    placement = Text(validate=validate.Length(min=1, max=64))

    @validates_schema
    def _check(self, data: dict, **_: object) -> None:
        for name in REQUIRED_BY_TYPE.get(data.get("type", ""), ()):
            if not data.get(name):
                raise ValidationError(f"required for {data['type']} events", field_name=name)
        ts = data.get("ts")
        if ts is not None:
            if ts < MIN_TS_MS:
                raise ValidationError(
                    "must be epoch milliseconds after 2000-01-01", field_name="ts"
                )
            if ts > time.time() * 1000 + MAX_CLOCK_SKEW_MS:
                raise ValidationError("is more than 24 hours in the future", field_name="ts")

    @post_load
    def _strip_urls(self, data: dict, **_: object) -> dict:
        for name in ("url", "referrer"):
            if name in data:
                data[name] = clean_url(data[name])
        if "country" in data:
            data["country"] = data["country"].upper()
        return data


class CollectBatchSchema(Schema):
    """The envelope: one visitor, a batch of events."""

    class Meta:
        unknown = EXCLUDE

    site = Text(
        validate=validate.Length(min=1, max=128),
        metadata={"description": "Site key (may also be given as ?site= or X-Site-Key)."},
    )
    visitor = Text(
        required=True,
        validate=_id,
        metadata={
            "description": "Random first-party visitor id chosen by the snippet (no cookie)."
        },
    )
    dnt = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Set by the snippet when the browser signals Do-Not-Track or Global Privacy Control."
        },
    )
    events = fields.List(
        fields.Dict(),
        required=True,
        validate=validate.Length(min=1, max=MAX_EVENTS_PER_BATCH),
        metadata={"description": f"1 to {MAX_EVENTS_PER_BATCH} events (see Event)."},
    )


class RejectedEventSchema(Schema):
    index = fields.Integer()
    id = fields.String(allow_none=True)
    field = fields.String()
    reason = fields.String()


class ZipAnswerSchema(Schema):
    status = fields.String(
        metadata={
            "description": "ok; invalid (not the form of a postal code); unknown (well formed, "
            "but no such code in the data); unavailable (no data to look it up in)",
            "enum": ["ok", "invalid", "unknown", "unavailable"],
        }
    )
    reason = fields.String(metadata={"description": "A sentence for the visitor."})


class CollectResultSchema(Schema):
    accepted = fields.Integer(metadata={"description": "New events stored durably."})
    duplicates = fields.Integer(
        metadata={"description": "Events already stored earlier (retries)."}
    )
    rejected = fields.List(fields.Nested(RejectedEventSchema))
    profile = fields.Boolean(metadata={"description": "False when DNT/GPC asked for no profile."})
    zip = fields.Nested(
        ZipAnswerSchema,
        metadata={"description": "When the batch held a ZIP event: what its last ZIP is."},
    )


_event_schema = EventSchema()
_batch_schema = CollectBatchSchema()

# A fast path for the common, well-formed event: plain checks that accept exactly what the
# marshmallow schema accepts for these fields and return the same dict. Anything else (unknown
# or exotic fields, any doubt) goes through marshmallow, which also writes the error messages.
# Marshmallow costs about 40 µs per event; this is about 2 µs, and collect is the hottest path.
_ID_RE = re.compile(ID_PATTERN)
_FAST_TEXT = {"category": (1, 64), "query": (1, 256), "token": (1, 512), "url": (0, 2048),
              "referrer": (0, 2048), "page_type": (1, 32), "placement": (1, 64)}  # fmt: skip
_FAST_KEYS = frozenset({"id", "type", "ts", "product_id", *_FAST_TEXT})
_TYPE_SET = frozenset(EVENT_TYPES)


def fast_id(v: object) -> bool:
    return type(v) is str and 0 < len(v) <= 64 and _ID_RE.match(v) is not None


def fast_event(raw: object, now_ms: float) -> dict | None:
    """The validated event, with ``now_ms`` (the batch's receive time) as its ts when the client
    gave none; or None when marshmallow must decide."""
    if type(raw) is not dict or not raw.keys() <= _FAST_KEYS:
        return None
    etype, ts = raw.get("type"), raw.get("ts")
    if type(etype) is not str or etype not in _TYPE_SET:
        return None
    if type(ts) is not int and (ts is not None or "ts" in raw):
        return None
    if not fast_id(raw.get("id")):
        return None
    if ts is not None and (ts < MIN_TS_MS or ts > now_ms + MAX_CLOCK_SKEW_MS):
        return None
    for name, v in raw.items():
        # Walk the event's own fields (usually four), not every optional one.
        bounds = _FAST_TEXT.get(name)
        if bounds is not None:
            if type(v) is not str or not bounds[0] <= len(v) <= bounds[1]:
                return None
            if not v.isascii() and has_lone_surrogate(v):  # isascii: a flag, no scan
                return None
        elif name == "product_id" and not fast_id(v):
            return None
    for name in REQUIRED_BY_TYPE.get(etype, ()):
        if not raw.get(name):
            return None
    event = dict(raw)
    if ts is None:
        event["ts"] = int(now_ms)
    for name in ("url", "referrer"):
        if name in event:
            event[name] = clean_url(event[name])
    return event


def _fast_batch(payload: dict) -> dict | None:
    if not payload.keys() <= {"site", "visitor", "events", "dnt"}:
        return None
    site, events, dnt = payload.get("site"), payload.get("events"), payload.get("dnt", False)
    # An explicit null is not an absent site: marshmallow refuses it ("may not be null").
    if "site" in payload and not (
        type(site) is str and 0 < len(site) <= 128 and not has_lone_surrogate(site)
    ):
        return None
    if (
        type(events) is not list
        or not 0 < len(events) <= MAX_EVENTS_PER_BATCH
        or type(dnt) is not bool
    ):
        return None
    if not fast_id(payload.get("visitor")) or not all(type(e) is dict for e in events):
        return None
    return {**payload, "dnt": dnt}


def flatten_errors(messages: dict | list, prefix: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict as (dotted field, reason) pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.extend((prefix or "_schema", m) for m in messages)
    else:
        for m in messages:
            out.extend(flatten_errors(m, prefix))
    return out


def parse_json(body: bytes | str, *, max_depth: int | None = MAX_JSON_DEPTH) -> object:
    """A request body's JSON value: orjson for speed, the standard library for what orjson
    refuses but JSON allows (integers beyond 64 bits, lone surrogate escapes).

    Raises JsonTooDeep past ``max_depth`` levels, another ValueError when the body is not JSON.
    ``max_depth=None`` is for app.fast_lane: its fast checks accept only flat events, and
    load_batch and load_events check the depth of what they hand to marshmallow, so the lane
    does not walk every batch again.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(body)
        except RecursionError:
            # Only nesting recurses: hundreds of levels, far past the limit (orjson refuses
            # more than 1024 levels, so very deep bodies always come this way).
            raise JsonTooDeep() from None
    if max_depth is not None and nested_deeper_than(value, max_depth):
        raise JsonTooDeep(max_depth)
    return value


def load_batch(payload: object) -> dict:
    """Validate the envelope; raises ValidationError for the whole batch, JsonTooDeep for a
    body nested past MAX_JSON_DEPTH that parse_json did not check."""
    if not isinstance(payload, dict):
        raise ValidationError("the body must be a JSON object", field_name="_body")
    fast = _fast_batch(payload)
    if fast is not None:
        return fast
    if nested_deeper_than(payload, MAX_JSON_DEPTH):
        raise JsonTooDeep()
    return _batch_schema.load(payload)


def load_events(raw_events: list[dict]) -> tuple[list[tuple[int, dict]], list[dict]]:
    """Validate events one by one: (index, event) for the good, a report entry for the bad.
    Events without a ts get the batch's receive time. Raises JsonTooDeep as load_batch does."""
    good: list[tuple[int, dict]] = []
    bad: list[dict] = []
    now_ms = time.time() * 1000
    for index, raw in enumerate(raw_events):
        fast = fast_event(raw, now_ms)
        if fast is not None:
            good.append((index, fast))
            continue
        # Fast events are flat; only what marshmallow sees can be nested.
        if nested_deeper_than(raw, _EVENT_DEPTH):
            raise JsonTooDeep()
        try:
            good.append((index, marshmallow_event(raw, now_ms)))
        except ValidationError as err:
            field, reason = flatten_errors(err.messages)[0]
            event_id = raw.get("id")
            # The id is echoed so the client can match the report; a lone surrogate cannot be
            # written as JSON by orjson (and is no valid id anyway).
            if not isinstance(event_id, str) or has_lone_surrogate(event_id):
                event_id = None
            bad.append({"index": index, "id": event_id, "field": field, "reason": reason})
    return good, bad


def marshmallow_event(raw: dict, now_ms: float) -> dict:
    """What fast_event returns, by marshmallow, for any event; raises ValidationError."""
    event = _event_schema.load(raw)
    event.setdefault("ts", int(now_ms))
    return event
