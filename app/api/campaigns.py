"""Tenant admin API for campaigns (admin key): plan, launch, pause, end, and read reports."""

from __future__ import annotations

from flask import request
from flask.views import MethodView

from app import api_schemas as bodies
from app.api_docs import ok
from app.auth import admin_tenant
from app.request_body import Blueprint
from app.services import services
from campaigns import definitions as cmp
from campaigns.campaign_schema import CampaignSchema
from campaigns.report import campaign_report, holdout_report
from enrichment.segments import list_segments

blp = Blueprint(
    "campaigns",
    __name__,
    url_prefix="/v1/admin",
    description="Campaigns: offers to an audience with a control group, and their reports",
)

LIMITS = (
    f"At most {cmp.MAX_CAMPAIGNS} campaigns not ended per tenant; body at most 16 KiB. A bad "
    "definition is refused with the field and the reason (an unknown product, segment or CRM "
    "attribute, an audience no one can match, end before start, a control share outside "
    "0..0.9, a name in use whatever its case)."
)


def _body() -> object:
    # Called after the key check (admin_tenant), so an unauthenticated body is never parsed.
    # A malformed body is Flask's 400, a wrong media type its 415 (both in the JSON shape).
    return request.get_json()


def _facts(tenant: str) -> cmp.TenantFacts:
    here = services()

    def segment_ids() -> set[int] | None:
        listed = list_segments(here.settings)
        return {int(s["id"]) for s in listed} if listed else None

    return cmp.tenant_facts(here.redis, tenant, segment_ids)


def _out(campaign: cmp.Campaign) -> dict:
    return campaign.as_dict()


@blp.route("/campaigns")
class Campaigns(MethodView):
    @blp.doc(summary="This tenant's campaigns, highest priority first")
    @blp.doc(responses=ok(bodies.CampaignListSchema))
    def get(self):
        tenant = admin_tenant()
        return {"campaigns": [_out(c) for c in cmp.list_campaigns(services().redis, tenant.name)]}

    @blp.doc(
        summary="Create a campaign (it runs at once, within its schedule)",
        description=LIMITS,
        requestBody={"required": True, "content": {"application/json": {"schema": CampaignSchema}}},
    )
    @blp.alt_response(201, schema=bodies.CampaignOutSchema, description="Created")
    @blp.alt_response(409, description="A campaign of that name exists")
    @blp.alt_response(422, description="Invalid definition (the field is named)")
    def post(self):
        tenant = admin_tenant()
        created = cmp.create_campaign(services().redis, tenant.name, _body(), _facts(tenant.name))
        return _out(created), 201


@blp.route("/campaigns/<string:name>")
class CampaignOne(MethodView):
    @blp.doc(summary="One campaign, by name or id")
    @blp.doc(responses=ok(bodies.CampaignOutSchema))
    def get(self, name: str):
        tenant = admin_tenant()
        return _out(cmp.get_campaign(services().redis, tenant.name, name))

    @blp.doc(
        summary="Change a campaign (its offer and control share are fixed once people are in it)",
        # The body is CampaignSchema with every field optional: only those given change.
        description=LIMITS,
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": CampaignSchema}},
        },
    )
    @blp.doc(responses=ok(bodies.CampaignOutSchema, "The campaign as changed"))
    def patch(self, name: str):
        tenant = admin_tenant()
        updated = cmp.update_campaign(
            services().redis, tenant.name, name, _body(), _facts(tenant.name)
        )
        return _out(updated)


def _status(name: str, status: str) -> dict:
    tenant = admin_tenant()
    return _out(cmp.set_status(services().redis, tenant.name, name, status))


@blp.route("/campaigns/<string:name>/pause", methods=["POST"])
@blp.doc(summary="Pause a campaign: nobody new is assigned or served it until resumed")
@blp.doc(responses=ok(bodies.CampaignOutSchema))
def pause(name: str):
    return _status(name, "paused")


@blp.route("/campaigns/<string:name>/resume", methods=["POST"])
@blp.doc(summary="Resume a paused campaign")
@blp.doc(responses=ok(bodies.CampaignOutSchema))
def resume(name: str):
    return _status(name, "running")


@blp.route("/campaigns/<string:name>/end", methods=["POST"])
@blp.doc(summary="End a campaign for good (its report stays)")
@blp.doc(responses=ok(bodies.CampaignOutSchema))
def end(name: str):
    return _status(name, "ended")


@blp.route("/campaigns/<string:name>/report")
@blp.doc(
    summary="Campaign report: per group people, exposures, impressions, clicks, conversions, "
    "revenue; uplift with an always-valid 95% interval, incremental conversions and revenue, "
    "cost and ROI; click-through and conversion by score decile"
)
@blp.doc(responses=ok(bodies.CampaignReportSchema))
def report(name: str):
    tenant = admin_tenant()
    r = services().redis
    return campaign_report(r, tenant.name, cmp.get_campaign(r, tenant.name, name))


@blp.route("/holdout/report")
@blp.doc(summary="Personalization as a whole against the tenant-wide holdout (popularity only)")
@blp.doc(responses=ok(bodies.HoldoutReportSchema))
def holdout():
    tenant = admin_tenant()
    return holdout_report(services().redis, tenant.name, tenant.holdout_share)
