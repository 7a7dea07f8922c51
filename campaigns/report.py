"""Campaign reports from the counters kept at serving and collect time (no archive scan).

Per group (``treated``, ``control``): people assigned, exposures (offers served, or for the
control group the ones it would have been served), impressions, clicks, conversions and
revenue; the uplift with its always-valid interval and the adjustment for behaviour before
assignment (``campaigns.uplift``); cost and ROI; and click-through and conversion by score
decile, so a team sees whether the model's ranking holds on live traffic.
"""

from __future__ import annotations

import time

import redis

from campaigns.assignment import CONTROL, GROUPS, HOLDOUT, TREATED
from campaigns.definitions import Campaign
from campaigns.uplift import GroupCounts, uplift
from store import keys
from store.redis_client import reply_text

MEASURES = ("people", "exposures", "impressions", "clicks", "conversions", "revenue")
ITT = (
    "intention-to-treat: every person assigned counts in their group, whether or not they "
    "saw or opened the offer; the control group's exposures are the offers it would have been "
    "served, so the groups are compared like with like"
)
CONTACT_LISTS = (
    "an exported contact list assigns every listed person and counts them like a person served "
    "(a person served earlier keeps their group); the control rows are held back, not contacted; "
    "each listing counts an exposure, so the cost (cost per contact x treated people) holds for "
    "lists and web alike; responses imported from the channel are conversions by the same rule, "
    "once per person within the attribution window"
)


def read_counters(r: redis.Redis, tenant: str, campaign_id: str) -> dict[str, float]:
    raw = r.hgetall(keys.campaign_counters(tenant, campaign_id))
    return {reply_text(k): float(reply_text(v)) for k, v in raw.items()}


def _group(c: dict[str, float], group: str) -> GroupCounts:
    def get(name: str) -> float:
        return c.get(f"{group}:{name}", 0.0)

    return GroupCounts(
        people=int(get("people")),
        conversions=int(get("conversions")),
        revenue=get("revenue"),
        revenue_sq=get("revenue_sq"),
        x_sum=get("x_sum"),
        x_sq_sum=get("x_sq_sum"),
        xy_sum=get("xy_sum"),
        impressions=int(get("impressions")),
        clicks=int(get("clicks")),
    )


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def _groups(c: dict[str, float]) -> dict[str, dict]:
    out = {}
    for group in GROUPS:
        row: dict[str, float | int | None] = {
            m: (
                round(c.get(f"{group}:{m}", 0.0), 2)
                if m == "revenue"
                else int(c.get(f"{group}:{m}", 0))
            )
            for m in MEASURES
        }
        row["conversion_rate"] = _rate(float(row["conversions"] or 0), float(row["people"] or 0))
        row["click_through"] = _rate(float(row["clicks"] or 0), float(row["impressions"] or 0))
        out[group] = row
    return out


def by_decile(c: dict[str, float], group: str | None = None) -> list[dict]:
    """Click-through and conversion per score decile (1: the top 10% of the model's scores),
    for one group or, with None, the counters keyed ``d<k>:<measure>``."""
    rows = []
    for d in range(1, 11):
        part = f"d{d}:{group}:" if group else f"d{d}:"
        imp = c.get(f"{part}impressions", 0.0)
        clk = c.get(f"{part}clicks", 0.0)
        conv = c.get(f"{part}conversions", 0.0)
        if imp or clk or conv:
            rows.append(
                {
                    "decile": d,
                    "impressions": int(imp),
                    "clicks": int(clk),
                    "conversions": int(conv),
                    "click_through": _rate(clk, imp),
                }
            )
    return rows


def campaign_report(r: redis.Redis, tenant: str, campaign: Campaign) -> dict:
    c = read_counters(r, tenant, campaign.id)
    treated, control = _group(c, TREATED), _group(c, CONTROL)
    result = uplift(
        treated,
        control,
        cost_per_contact=campaign.cost_per_contact,
        value_per_conversion=campaign.value_per_conversion,
        planned_people=campaign.planned_people,
    )
    return {
        "campaign": campaign.name,
        "id": campaign.id,
        "status": campaign.status,
        "offer": campaign.offer,
        "channel": campaign.channel,
        "control_share": campaign.control_share,
        "attribution_days": campaign.attribution_days,
        **_groups(c),
        "uplift": result,
        "by_score_decile": {g: by_decile(c, g) for g in GROUPS},
        "method": {
            "analysis": ITT,
            "conversion": (
                f"a purchase of {campaign.product_id!r} within {campaign.attribution_days} days "
                "of the person's assignment, counted once per person"
                if campaign.product_id
                else "a click on the content offer, counted once per person"
            ),
            "responses": "impressions and clicks count only with a verified, unreplayed token",
            "contact_lists": CONTACT_LISTS,
            "counters": "kept at serving and collect time; the report scans nothing",
        },
        "generated_at": time.time(),
    }


def holdout_report(r: redis.Redis, tenant: str, holdout_share: float) -> dict:
    """Personalization as a whole (``treated``: models and campaigns) against the tenant-wide
    holdout (``control``: popularity offers only); a conversion is any purchase after the
    person's assignment."""
    c = read_counters(r, tenant, HOLDOUT)
    result = uplift(_group(c, TREATED), _group(c, CONTROL))
    return {
        "holdout": True,
        "holdout_share": holdout_share,
        **_groups(c),
        "uplift": result,
        "method": {
            "analysis": ITT,
            "groups": "treated: personalized offers (models and campaigns); control: the "
            "tenant-wide holdout, served popularity offers only",
            "conversion": "any purchase after the person's assignment, counted once per person",
        },
        "generated_at": time.time(),
    }


def model_monitor(r: redis.Redis, tenant: str, version: str) -> list[dict]:
    """Live click-through and conversion of a model version's offers by score decile."""
    return by_decile(read_counters(r, tenant, f"_model:{version}"))
