"""Campaign definitions: what a marketing team plans, checked against what the tenant has.

A campaign names an offer (a catalog product, or a content offer with its own id, title and
URL), an audience (ZIP segments, states, identified or anonymous visitors, CRM attribute
filters, a model score threshold or top share, a trigger on events), a channel (a web placement,
or a contact list for e-mail, direct mail or a call centre), a schedule, its economics (cost per
contact, value per conversion), a control share and a priority among campaigns.

Definitions live in one Redis hash per tenant with a version counter that every change bumps;
serving reads the counter in its one round trip and reloads a process's copy only when it
moved (``CampaignCache``), as it does for the catalog and the rules.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import redis
from marshmallow import (
    Schema,
    ValidationError,
)

from campaigns.campaign_schema import CREATE, UPDATE
from clickstream import catalog
from enrichment.crm.serving import live_attributes
from models import registry
from store import keys
from store.redis_client import reply_text

MAX_CAMPAIGNS = 200  # per tenant; every offer request walks the running ones
STATUSES = ("running", "paused", "ended")


class CampaignError(ValueError):
    """A campaign change refused for a reason the admin can fix; the message names the field."""


class UnknownCampaign(CampaignError):
    pass


class CampaignExists(CampaignError):
    pass


def normalise_name(name: str) -> str:
    # "Spring Sale" and "spring  sale " are one campaign to a marketer reading a report.
    return re.sub(r"\s+", " ", name.strip()).casefold()


# -- the domain value -------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    offer: dict
    audience: dict
    channel: dict
    start: float | None
    end: float | None
    cost_per_contact: float
    value_per_conversion: float | None
    control_share: float
    priority: int
    attribution_days: int
    status: str
    created_at: float
    updated_at: float
    planned_people: int = 10_000

    @property
    def product_id(self) -> str | None:
        return self.offer.get("product_id")

    @property
    def content(self) -> dict | None:
        return self.offer.get("content")

    @property
    def offer_id(self) -> str:
        """The id offers and tokens carry: the product's, or the content offer's own."""
        return self.product_id or (self.content or {})["id"]

    @property
    def is_web(self) -> bool:
        return self.channel.get("type", "web") == "web"

    @property
    def trigger(self) -> dict | None:
        return self.audience.get("trigger")

    def live(self, now: float) -> bool:
        """Running and within its schedule."""
        return (
            self.status == "running"
            and (self.start is None or self.start <= now)
            and (self.end is None or now < self.end)
        )

    def as_dict(self) -> dict:
        out = dict(vars(self))
        for name in ("start", "end"):
            if out[name] is not None:
                out[name] = datetime.fromtimestamp(out[name], UTC).isoformat()
        return out

    @classmethod
    def from_json(cls, raw: bytes | str) -> Campaign:
        return cls(**orjson.loads(raw))


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


# -- checks against what the tenant has ----------------------------------------------------


@dataclass
class TenantFacts:
    """What a definition is checked against; gathered by the caller (the app knows settings)."""

    products: dict[str, dict]
    segments: set[int] | None  # None: no segmentation built
    crm_attributes: dict[str, str] | None  # None: no CRM version live
    model_products: set[str] | None  # None: no champion model


def tenant_facts(
    r: redis.Redis, tenant: str, segment_ids: Callable[[], set[int] | None]
) -> TenantFacts:
    """The facts of ``tenant``; ``segment_ids`` is injected because segments live in the
    settings' data dir, which the caller holds."""
    _, products = catalog.load_catalog(r, tenant)
    champion = registry.champion(r, tenant)
    meta = registry.get_version(r, tenant, champion) if champion else None
    model_products = set((meta or {}).get("holdout_auc") or ()) if meta else None
    return TenantFacts(products, segment_ids(), live_attributes(r, tenant), model_products)


def _check_against(data: dict, facts: TenantFacts) -> None:
    """Refuse what no one could match or what does not exist, naming the field."""
    pid = data["offer"].get("product_id")
    if pid is not None:
        product = facts.products.get(pid)
        if product is None:
            raise CampaignError(f"offer.product_id: no product {pid!r} in the catalog")
        if not product.get("active", True):
            raise CampaignError(f"offer.product_id: product {pid!r} is not active")
    audience = data.get("audience") or {}
    wanted = set(audience.get("segments") or ()) | set(
        (audience.get("trigger") or {}).get("segments") or ()
    )
    if wanted:
        if facts.segments is None:
            raise CampaignError(
                "audience.segments: no ZIP segmentation is built yet (offerwise segments build)"
            )
        unknown = sorted(wanted - facts.segments)
        if unknown:
            raise CampaignError(
                f"audience.segments: no segment {unknown[0]} (known: 0 to {max(facts.segments)})"
            )
    for i, rule in enumerate(audience.get("crm") or ()):
        if facts.crm_attributes is None:
            raise CampaignError("audience.crm: no CRM extract is live for this tenant")
        if rule["attribute"] not in facts.crm_attributes:
            known = ", ".join(sorted(facts.crm_attributes)[:20])
            raise CampaignError(
                f"audience.crm.{i}.attribute: no CRM attribute {rule['attribute']!r} "
                f"(known: {known})"
            )
        kind = facts.crm_attributes[rule["attribute"]]
        values = rule["value"] if isinstance(rule["value"], list) else [rule["value"]]
        if rule["op"] in ("lt", "le", "gt", "ge") and not all(
            isinstance(v, int | float) for v in values
        ):
            raise CampaignError(f"audience.crm.{i}.value: op {rule['op']} needs a number")
        if (
            kind in ("number", "integer", "float")
            and rule["op"] != "in"
            and not isinstance(rule["value"], int | float)
        ):
            raise CampaignError(f"audience.crm.{i}.value: {rule['attribute']} is a number")
    score = audience.get("score")
    if score is not None:
        if facts.model_products is None:
            raise CampaignError("audience.score: this tenant has no model yet (offerwise train)")
        if score["product_id"] not in facts.model_products:
            raise CampaignError(
                f"audience.score.product_id: the champion model does not score "
                f"{score['product_id']!r}"
            )
    trigger = audience.get("trigger") or {}
    if trigger.get("product_id") and trigger["product_id"] not in facts.products:
        raise CampaignError(
            f"audience.trigger.product_id: no product {trigger['product_id']!r} in the catalog"
        )
    channel = data.get("channel") or {}
    if channel.get("type", "web") != "web" and channel.get("placement"):
        raise CampaignError("channel.placement: only web campaigns have a placement")
    if channel.get("type", "web") != "web" and trigger:
        raise CampaignError("audience.trigger: triggers apply to web campaigns only")


def _first_error(err: ValidationError) -> str:
    def walk(messages: object, path: tuple[str, ...]) -> tuple[str, str] | None:
        if isinstance(messages, dict):
            for key, value in messages.items():
                sub = path if key in ("_schema", "value") else (*path, str(key))
                found = walk(value, sub)
                if found:
                    return found
        elif isinstance(messages, list) and messages:
            if isinstance(messages[0], str):
                return ".".join(path) or "body", messages[0]
            return walk(messages[0], path)
        return None

    found = walk(err.messages, ())
    return f"{found[0]}: {found[1]}" if found else str(err.messages)


def _load(schema: Schema, payload: object) -> dict:
    if not isinstance(payload, dict):
        raise CampaignError("body: must be a JSON object")
    try:
        return schema.load(payload)
    except ValidationError as err:
        raise CampaignError(_first_error(err)) from None


# -- storage ----------------------------------------------------------------------------------


def _all(r: redis.Redis, tenant: str) -> list[Campaign]:
    return [Campaign.from_json(v) for v in r.hvals(keys.campaign_definitions(tenant))]


def list_campaigns(r: redis.Redis, tenant: str) -> list[Campaign]:
    """Every campaign, highest priority first, then newest."""
    return sorted(_all(r, tenant), key=lambda c: (-c.priority, -c.created_at))


def get_campaign(r: redis.Redis, tenant: str, name: str) -> Campaign:
    """By name (any case or spacing) or id; raises UnknownCampaign."""
    cid = reply_text(r.hget(keys.campaign_names(tenant), normalise_name(name))) or name
    raw = r.hget(keys.campaign_definitions(tenant), cid)
    if raw is None:
        raise UnknownCampaign(f"no campaign named {name!r}")
    return Campaign.from_json(raw)


def _save(r: redis.Redis, tenant: str, campaign: Campaign, old_name: str | None = None) -> None:
    pipe = r.pipeline(transaction=True)
    if old_name is not None and normalise_name(old_name) != normalise_name(campaign.name):
        pipe.hdel(keys.campaign_names(tenant), normalise_name(old_name))
    pipe.hset(keys.campaign_names(tenant), normalise_name(campaign.name), campaign.id)
    pipe.hset(keys.campaign_definitions(tenant), campaign.id, orjson.dumps(vars(campaign)))
    pipe.incr(keys.campaigns_version(tenant))
    pipe.execute()


def create_campaign(r: redis.Redis, tenant: str, payload: object, facts: TenantFacts) -> Campaign:
    data = _load(CREATE, payload)
    _check_against(data, facts)
    existing = _all(r, tenant)
    if len([c for c in existing if c.status != "ended"]) >= MAX_CAMPAIGNS:
        raise CampaignError(f"a tenant may have at most {MAX_CAMPAIGNS} campaigns not ended")
    now = time.time()
    campaign = Campaign(
        id="c" + secrets.token_hex(5),
        name=data["name"].strip(),
        offer=data["offer"],
        audience=data["audience"],
        channel=data["channel"],
        start=_epoch(data["start"]),
        end=_epoch(data["end"]),
        cost_per_contact=data["cost_per_contact"],
        value_per_conversion=data["value_per_conversion"],
        control_share=data["control_share"],
        priority=data["priority"],
        attribution_days=data["attribution_days"],
        planned_people=data["planned_people"],
        status="running",
        created_at=now,
        updated_at=now,
    )
    # Names are unique whatever their case or spacing: claimed first, atomically.
    if not r.hsetnx(keys.campaign_names(tenant), normalise_name(campaign.name), campaign.id):
        raise CampaignExists(f"name: a campaign named {campaign.name!r} exists already")
    _save(r, tenant, campaign)
    return campaign


_FIXED_AFTER_START = ("offer", "control_share", "planned_people")


def update_campaign(
    r: redis.Redis, tenant: str, name: str, payload: object, facts: TenantFacts
) -> Campaign:
    """Change fields of a campaign. Its offer and control share are fixed once it has people:
    changing them would mix two experiments in one report."""
    current = get_campaign(r, tenant, name)
    if current.status == "ended":
        raise CampaignError(f"status: campaign {current.name!r} has ended; create a new one")
    data = _load(UPDATE, payload)
    if any(k in data for k in _FIXED_AFTER_START) and r.exists(
        keys.campaign_counters(tenant, current.id)
    ):
        fixed = next(k for k in _FIXED_AFTER_START if k in data)
        raise CampaignError(
            f"{fixed}: fixed once people are assigned (it would mix two experiments in one "
            "report); end this campaign and create a new one"
        )
    changes = dict(data)
    for k in ("start", "end"):
        if k in changes:
            changes[k] = _epoch(changes[k])
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    merged = {**vars(current), **changes, "updated_at": time.time()}
    if (
        merged["start"] is not None
        and merged["end"] is not None
        and merged["end"] <= merged["start"]
    ):
        raise CampaignError("end: must be after start")
    _check_against(merged, facts)
    renamed = "name" in changes and normalise_name(changes["name"]) != normalise_name(current.name)
    if renamed and not r.hsetnx(
        keys.campaign_names(tenant), normalise_name(changes["name"]), current.id
    ):
        raise CampaignExists(f"name: a campaign named {changes['name']!r} exists already")
    updated = Campaign(**merged)
    _save(r, tenant, updated, old_name=current.name)
    return updated


def set_status(r: redis.Redis, tenant: str, name: str, status: str) -> Campaign:
    """Pause, resume (running) or end a campaign; an ended campaign stays ended."""
    if status not in STATUSES:
        raise CampaignError(f"status: one of {', '.join(STATUSES)}")
    current = get_campaign(r, tenant, name)
    if current.status == "ended" and status != "ended":
        raise CampaignError(f"status: campaign {current.name!r} has ended; create a new one")
    updated = Campaign(**{**vars(current), "status": status, "updated_at": time.time()})
    _save(r, tenant, updated)
    return updated


class CampaignCache:
    """Per-process live web campaigns of each tenant, reloaded when the version (read in the
    serving round trip) moves; highest priority first."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, list[Campaign]]] = {}
        self._lock = threading.Lock()

    def get(self, r: redis.Redis, tenant: str, version: int) -> list[Campaign]:
        hit = self._cache.get(tenant)
        if hit is not None and hit[0] == version:
            return hit[1]
        found = [c for c in list_campaigns(r, tenant) if c.is_web and c.status == "running"]
        with self._lock:
            self._cache[tenant] = (version, found)
        return found
