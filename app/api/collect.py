"""POST /v1/collect: clickstream beacons from the snippet (site key)."""

from __future__ import annotations

import time
from functools import partial

import orjson
from flask import Response, request
from flask_smorest import abort
from marshmallow import ValidationError

from app.api_docs import SITE_KEY_ERRORS, responses
from app.auth import site_tenant, tracking_allowed
from app.enrich import zip_block
from app.observability import EVENTS_BY, count_campaign_events
from app.request_body import Blueprint
from app.services import Services, services
from campaigns.measure import OFFER_EVENTS, check_offer_events
from clickstream.schemas import (
    MAX_BODY_BYTES,
    MAX_EVENTS_PER_BATCH,
    CollectBatchSchema,
    CollectResultSchema,
    JsonTooDeep,
    flatten_errors,
    load_batch,
    load_events,
    parse_json,
)
from store.tenants import Tenant

blp = Blueprint("collect", __name__, url_prefix="/v1", description="Clickstream collection")

ACCEPTED_TYPES = ("application/json", "text/plain", "")


@blp.route("/collect", methods=["POST"])
@blp.doc(
    summary="Collect a batch of events for one visitor",
    description=(
        f"Limits: body at most {MAX_BODY_BYTES} bytes (413), 1 to {MAX_EVENTS_PER_BATCH} events "
        "per batch, string lengths as in the Event schema, and the tenant's rate limit per site "
        "key (429 with Retry-After). Accepts `application/json` and `text/plain` (what "
        "`navigator.sendBeacon` sends, so no CORS preflight). Each event is validated on its own: "
        "good events are stored even when others are rejected, and each rejected event is listed "
        "with its index, field and reason. A 200 means every accepted event is durably in the "
        "tenant's event stream; retries with the same event id (per visitor, for at least "
        "48 h) are counted as duplicates, not stored twice. With `DNT: 1` or `Sec-GPC: 1` no "
        "visitor profile is built and no event is kept; only aggregate counters move. No "
        "cookie is ever set and the IP is not stored."
    ),
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": CollectBatchSchema},
            "text/plain": {"schema": CollectBatchSchema},
        },
    },
    parameters=[
        {
            "in": "query",
            "name": "site",
            "schema": {"type": "string", "maxLength": 128},
            "required": False,
        }
    ],
    responses=responses(
        {
            200: (CollectResultSchema, "Events stored (some may be rejected)"),
            **SITE_KEY_ERRORS,
            413: "Body too large",
            415: "Unsupported content type",
            422: "Batch envelope invalid, or every event rejected",
            503: "Event backlog full (the archiver is behind); retry after Retry-After",
        }
    ),
)
def collect():
    kind = media_type(request.environ)
    if kind not in ACCEPTED_TYPES:
        abort(
            415,
            message=f"Content-Type: {kind} is not accepted; send application/json or text/plain",
        )
    body = request.get_data(cache=False)
    try:
        payload = parse_json(body)
    except JsonTooDeep as err:
        abort(400, message=f"body: {err}")
    except ValueError as err:
        abort(400, message=f"body: malformed JSON ({err})")
    try:
        batch = load_batch(payload)
    except ValidationError as err:
        field, reason = flatten_errors(err.messages)[0]
        abort(422, message=f"{field}: {reason}", errors={"json": err.messages})
    tenant = site_tenant(batch.get("site"))
    good, bad = load_events(batch["events"])
    if not good:
        EVENTS_BY(tenant.name, "rejected").inc(len(bad))
        first = bad[0]
        abort(
            422,
            message=f"events.{first['index']}.{first['field']}: {first['reason']} (no event accepted)",
            errors={"json": {"events": bad}},
        )
    track = tracking_allowed() and not batch["dnt"]
    answer = store_batch(services(), tenant, batch, good, bad, track)
    # Plain data already: a ready Response skips Flask's JSON provider (the schema documents it).
    return Response(orjson.dumps(answer), mimetype="application/json")


def media_type(environ: dict) -> str:
    """The media type without parameters, as request.mimetype gives it, without its parser."""
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()


def store_batch(
    here: Services,
    tenant: Tenant,
    batch: dict,
    good: list[tuple[int, dict]],
    bad: list[dict],
    track: bool,
) -> dict:
    """Store a validated batch with at least one good event and count it: the answer of a
    successful collect, for this view and app.fast_lane. Raises Refused (rate, backlog)."""
    now = time.time()
    checked = (
        check_offer_events(here.redis, tenant, good, now)
        if track and any(event["type"] in OFFER_EVENTS for _, event in good)
        else None
    )
    result = here.ingestor.ingest(
        tenant,
        batch["visitor"],
        [event for _, event in good],
        track=track,
        on_zip=partial(zip_block, settings=here.settings),
        now=now,
    )
    if track:
        by_index = dict(good)
        claims = {by_index[i]["id"]: c for i, c in checked.claims.items()} if checked else {}
        moved = here.campaign_events.record(
            here.redis, tenant, batch["visitor"], result.accepted, claims, now,
            campaigns_version=result.campaigns_version,
        )  # fmt: skip
        count_campaign_events(tenant.name, result.accepted, claims, moved)
    EVENTS_BY(tenant.name, "accepted").inc(len(result.accepted))
    if bad:
        EVENTS_BY(tenant.name, "rejected").inc(len(bad))
    if result.duplicates:
        EVENTS_BY(tenant.name, "duplicate").inc(result.duplicates)
    answer = {
        "accepted": len(result.accepted),
        "duplicates": result.duplicates,
        "rejected": bad,
        "profile": track,
    }
    if checked is not None and checked.flagged:
        answer["flagged"] = checked.flagged
    if result.zip is not None:
        answer["zip"] = result.zip
    return answer
