"""GET/POST /v1/recommend: ranked real-time offers for one visitor (site key)."""

from __future__ import annotations

import orjson
from flask import Response, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import ValidationError

from app.api_docs import SITE_KEY_ERRORS, responses
from app.auth import site_tenant, tracking_allowed
from app.observability import OFFERS_BY
from app.request_body import Blueprint
from app.services import Services, services
from campaigns.schemas import RecommendArgsSchema, RecommendResultSchema, fast_recommend_args
from models.popularity import MAX_OFFERS
from store.tenants import Tenant

# An instance, not the class: webargs would build a new schema object on every request.
ARGS = RecommendArgsSchema()

blp = Blueprint("recommend", __name__, url_prefix="/v1", description="Real-time offers")

LIMITS = (
    f"Limits: n from 1 to {MAX_OFFERS}; at most 50 excluded ids; the tenant's rate limit per site "
    "key (429 with Retry-After), shared with /v1/collect; a POST body at most 16 KiB. "
    "Never offers what the visitor has in the cart or bought in the last 30 days."
)


def _recommend(args: dict) -> Response:
    tenant = site_tenant(args.get("site"))
    track = tracking_allowed() and not args["dnt"]
    body = offers_answer(services(), tenant, args, track)
    # Already plain data: a ready Response skips the schema dump flask-smorest would do (the
    # schema still documents it).
    return Response(orjson.dumps(body), mimetype="application/json")


def offers_answer(here: Services, tenant: Tenant, args: dict, track: bool) -> dict:
    """Rank and count the offers for validated arguments: the answer of a successful
    recommend, for this view and app.fast_lane. Raises Refused (rate limit), which
    app.errors answers."""
    result = here.recommender.recommend(
        here.redis,
        tenant,
        args["visitor"],
        args["n"],
        exclude=frozenset(args["exclude"]),
        track=track,
        explain=args["explain"],
        placement=args.get("placement"),
    )
    OFFERS_BY(tenant.name, result.source.split(":")[0]).inc(len(result.offers))
    body = {
        "offers": [o.as_dict() for o in result.offers],
        "source": result.source,
        "profile": track,
    }
    if result.degraded:
        body["degraded"] = True
    if args["explain"]:
        body["explanations"] = result.explanations
    return body


RESPONSES = responses(
    {
        200: (RecommendResultSchema, "Ranked offers"),
        **SITE_KEY_ERRORS,
        422: "Invalid parameter (named in the message)",
    }
)


def _query_args() -> dict:
    args = fast_recommend_args(request.args)
    if args is None:
        try:
            args = ARGS.load(request.args)
        except ValidationError as err:
            abort(422, errors={"query": err.messages})
    return args


@blp.route("/recommend")
class Recommend(MethodView):
    # The query is documented from the schema but parsed by _query_args: the hot path skips
    # webargs, whose parsing cost more than ranking the offers.
    @blp.doc(
        summary="Offers for a visitor",
        description=LIMITS,
        parameters=[{"in": "query", "schema": RecommendArgsSchema}],
        responses=RESPONSES,
    )
    def get(self):
        return _recommend(_query_args())

    @blp.doc(summary="Offers for a visitor (JSON body)", description=LIMITS)
    @blp.doc(responses=RESPONSES)
    @blp.arguments(ARGS, location="json", as_kwargs=False)
    def post(self, args: dict):
        return _recommend(args)
