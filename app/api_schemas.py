"""Response bodies of the JSON API, for the OpenAPI document (so a generated client has a type
for every success answer). The views build their answers themselves; these schemas only
describe them (documented with ``blp.doc(responses=...)``, see app.api_docs), so a field added
by the domain reaches clients at once and the document says what they can rely on. Objects
allow more properties than listed."""

from __future__ import annotations

from marshmallow import Schema, fields


class _Open(Schema):
    """A documented answer; the API may add properties (clients must ignore unknown ones)."""


def _dict(description: str) -> fields.Dict:
    return fields.Dict(metadata={"description": description})


class StatusSchema(_Open):
    status = fields.String()


class ReadySchema(StatusSchema):
    store = fields.String(metadata={"description": "ok, or unreachable: <reason>"})


class TenantSchema(_Open):
    tenant = fields.String()
    origins = fields.List(fields.String())
    rate_limit = fields.Integer()
    holdout_share = fields.Float()
    created_at = fields.Float(allow_none=True)


class TenantListSchema(_Open):
    tenants = fields.List(fields.Nested(TenantSchema))


class CatalogPageSchema(_Open):
    version = fields.Integer(allow_none=True)
    total = fields.Integer()
    products = fields.List(
        _dict("product_id, name, category, price, margin, url, image_url, active")
    )


class DayCountsSchema(_Open):
    date = fields.String()
    events = fields.Integer()
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer())


class DailyStatsSchema(_Open):
    tenant = fields.String()
    days = fields.List(fields.Nested(DayCountsSchema))


class SegmentsSchema(_Open):
    segmentation = fields.Dict(allow_none=True, metadata={"description": "None until built"})
    segments = fields.List(
        _dict("id, label, description, zips, population, population_share, mean_profile")
    )


class CampaignOutSchema(_Open):
    id = fields.String()
    name = fields.String()
    offer = _dict("product_id, or content {id, title, url, image_url}")
    audience = _dict("segments, states, visitors, crm, score, trigger")
    channel = _dict("type and placement")
    start = fields.String(allow_none=True)
    end = fields.String(allow_none=True)
    cost_per_contact = fields.Float()
    value_per_conversion = fields.Float(allow_none=True)
    control_share = fields.Float()
    priority = fields.Integer()
    attribution_days = fields.Integer()
    status = fields.String(metadata={"description": "running, paused or ended"})
    created_at = fields.Float()
    updated_at = fields.Float()
    planned_people = fields.Integer()


class CampaignListSchema(_Open):
    campaigns = fields.List(fields.Nested(CampaignOutSchema))


class GroupFiguresSchema(_Open):
    people = fields.Integer()
    exposures = fields.Integer()
    impressions = fields.Integer()
    clicks = fields.Integer()
    conversions = fields.Integer()
    revenue = fields.Float()
    conversion_rate = fields.Float(allow_none=True)
    click_through = fields.Float(allow_none=True)


class UpliftSchema(_Open):
    confidence = fields.Float()
    rates = _dict("treated and control conversion rates")
    absolute = fields.Float(allow_none=True)
    relative = fields.Float(allow_none=True)
    ci95 = fields.List(fields.Float(), allow_none=True, metadata={"description": "[low, high]"})
    ci95_fixed_horizon = fields.List(fields.Float(), allow_none=True)
    significant = fields.Boolean(allow_none=True)
    incremental_conversions = fields.Float(allow_none=True)
    incremental_revenue = fields.Float(allow_none=True)
    cost = fields.Float()
    roi = fields.Float(allow_none=True)
    roi_ci95 = fields.List(fields.Float(), allow_none=True)


class CampaignReportSchema(_Open):
    campaign = fields.String()
    id = fields.String()
    status = fields.String()
    treated = fields.Nested(GroupFiguresSchema)
    control = fields.Nested(GroupFiguresSchema)
    uplift = fields.Nested(UpliftSchema)
    by_score_decile = _dict("group -> list of {decile, impressions, clicks, ...}")
    method = _dict("How each figure is counted, in words")
    generated_at = fields.Float()


class HoldoutReportSchema(_Open):
    holdout = fields.Boolean()
    holdout_share = fields.Float()
    treated = fields.Nested(GroupFiguresSchema)
    control = fields.Nested(GroupFiguresSchema)
    uplift = fields.Nested(UpliftSchema)
    method = _dict("How each figure is counted, in words")
    generated_at = fields.Float()


class ResponsesReportSchema(_Open):
    campaign = fields.String()
    campaign_id = fields.String()
    rows = fields.Integer()
    counted = fields.Integer()
    conversions = fields.Integer()
    revenue = fields.Float()
    by_group = _dict("group -> counted, conversions, revenue")
    already_imported = fields.Integer()
    rejected = fields.Integer()
    rejected_by_reason = fields.Dict(keys=fields.String(), values=fields.Integer())
    errors = fields.List(_dict("row, reason"))
    errors_truncated = fields.Boolean()


class ValidationErrorRowSchema(_Open):
    row = fields.Integer()
    column = fields.String(allow_none=True)
    reason = fields.String()


class CrmImportSchema(_Open):
    status = fields.String()
    version = fields.String(allow_none=True)
    live_version = fields.String(allow_none=True)
    previous_version = fields.String(allow_none=True)
    rows_read = fields.Integer()
    rows_imported = fields.Integer()
    rows_rejected = fields.Integer()
    rows_skipped_erased = fields.Integer()
    errors = fields.List(fields.Nested(ValidationErrorRowSchema))
    error_counts = fields.Dict(keys=fields.String(), values=fields.Integer())
    columns = fields.List(fields.Raw())
    holdings = fields.Dict(allow_none=True)
    warnings = fields.List(fields.Raw())


class CrmVersionsSchema(_Open):
    tenant = fields.String()
    live_version = fields.String(allow_none=True)
    versions = fields.List(
        _dict("version, live, created_at, source, rows_imported, rows_rejected, ...")
    )


class CrmSwitchSchema(_Open):
    tenant = fields.String()
    status = fields.String()
    live_version = fields.String()
    previous_version = fields.String(allow_none=True)
    customers = fields.Integer(allow_none=True)
    seconds = fields.Float()


class JobQueuedSchema(_Open):
    job = fields.String(metadata={"description": "Poll the jobs endpoint with this id"})
    status = fields.String()


class JobSchema(_Open):
    id = fields.String()
    func = fields.String()
    status = fields.String(
        metadata={"description": "queued, started, finished, failed, deferred, scheduled, ..."}
    )
    enqueued_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)
    meta = fields.Dict()


class ErasureReceiptSchema(_Open):
    receipt_id = fields.String()
    tenant = fields.String()
    erased_at = fields.Float()
    customer_hash = fields.String(allow_none=True)
    visitors_erased = fields.Integer()
    removed = _dict("What was removed where, counted")
    redis_append_only_file = fields.String()


class ReceiptListSchema(_Open):
    receipts = fields.List(fields.Nested(ErasureReceiptSchema))


class ModelVersionsSchema(_Open):
    tenant = fields.String()
    champion = fields.String(allow_none=True)
    versions = fields.List(_dict("version, trained_at, products, metrics, champion, ..."))


class ChampionChangeSchema(_Open):
    tenant = fields.String()
    champion = fields.String(allow_none=True)
    previous = fields.String(allow_none=True)
    changed = fields.Boolean()
    reason = fields.String()


class GainsSchema(_Open):
    served = fields.String(allow_none=True)
    curves = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.Float()),
        metadata={"description": "Candidate -> share of positives in the top 0, 5, ..., 100%"},
    )


class ModelEvaluationSchema(_Open):
    tenant = fields.String()
    version = fields.String()
    products = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={"description": "Per product: each candidate's holdout figures, the served one"},
    )
    gains = fields.Dict(keys=fields.String(), values=fields.Nested(GainsSchema))
