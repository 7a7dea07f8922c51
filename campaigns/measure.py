"""What collected events mean for campaigns: trusted responses, conversions, triggers.

Two steps around the ingest of a batch (``app.api.collect.store_batch``):

1. ``check_offer_events`` before: an ``offer_impression`` or ``offer_click`` must carry a
   token this tenant's service issued for that product and that has not expired, used once per
   event type (a retry of the same event id is not a replay). Any other is stored flagged
   (``unverified``), counts toward no popularity, interest or report, and the collect answer
   says why. Claims are one small pipeline, only for batches that hold offer events.
2. ``CampaignEvents.record`` after, for the events the ingest accepted (never a duplicate):
   one script call, only for batches that hold a verified offer event, a purchase, an
   identify, a ZIP or an add-to-cart of a product a cart trigger watches. It counts
   impressions, clicks and conversions per campaign and group (and per score decile and model
   version), carries a visitor's campaign record to the customer at login, and opens trigger
   windows, so the next offer request (within a second) shows a triggered campaign.

Reports read these counters; nothing scans the archive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from campaigns import tokens
from campaigns.assignment import HOLDOUT, PERSON_TTL_S
from campaigns.definitions import Campaign, list_campaigns
from store import keys
from store.hot_script import HotScript
from store.tenants import Tenant

OFFER_EVENTS = ("offer_impression", "offer_click")
DAY_S = 86400
TOKEN_USES_TTL_S = tokens.TOKEN_TTL_S + 2 * DAY_S
CLICK_ATTRIBUTION_S = 7 * DAY_S  # a purchase this soon after a click counts for the model
MODEL_COUNTERS = "_model:"  # a model version's counters: campaign_counters("_model:<version>")


@dataclass
class OfferCheck:
    """The verified claims by event index, and the refused events' reasons."""

    claims: dict[int, tokens.TokenClaims] = field(default_factory=dict)
    flagged: list[dict] = field(default_factory=list)  # {index, field, reason}


def check_offer_events(
    r: redis.Redis, tenant: Tenant, good: list[tuple[int, dict]], now: float
) -> OfferCheck:
    """Verify the batch's offer events; a refused one is marked ``unverified`` in place (the
    ingest then stores it flagged and counts it nowhere)."""
    out = OfferCheck()
    pending: list[tuple[int, dict, tokens.TokenClaims, str, str]] = []
    for index, event in good:
        if event["type"] not in OFFER_EVENTS:
            continue
        token = event.get("token")
        try:
            if not token:
                raise tokens.TokenRefused("no offer token")
            claims = tokens.verify(tenant, token, event.get("product_id"), now)
        except tokens.TokenRefused as refused:
            _flag(out, index, event, str(refused))
            continue
        use_key = keys.offer_token_uses(tenant.name, int(claims.issued // DAY_S))
        pending.append((index, event, claims, use_key, f"{claims.signature}:{event['type']}"))
    if not pending:
        return out
    pipe = r.pipeline(transaction=False)
    for _, event, _, use_key, use in pending:
        pipe.hsetnx(use_key, use, event["id"])
        pipe.hget(use_key, use)
        pipe.expire(use_key, TOKEN_USES_TTL_S, nx=True)
    replies = pipe.execute()
    for i, (index, event, claims, _, _) in enumerate(pending):
        holder = replies[3 * i + 1]
        holder = holder.decode() if isinstance(holder, bytes) else holder
        if holder != event["id"]:
            _flag(out, index, event, "replayed: this offer token was used by another event")
        else:
            out.claims[index] = claims
    return out


def _flag(out: OfferCheck, index: int, event: dict, reason: str) -> None:
    event["unverified"] = reason
    out.flagged.append({"index": index, "field": "token", "reason": reason})


# What a conversion is, once for every script that counts one (this module's collect script,
# campaigns.responses' offline responses): the person's first conversion for campaign ``cid``
# counts in their recorded group (with their covariate for the report's adjustment, and their
# score decile), and its value adds to their revenue. The enclosing script defines ``person``
# (their record's key), ``now``, ``out`` and ``counters(cid)`` before it.
CONVERT_LUA = """
local function convert(cid, value)
  local rec = redis.call('HGET', person, cid)
  if not rec then return end
  local group, at, x, decile = string.match(rec, '^([^|]*)|([^|]*)|([^|]*)|?([^|]*)')
  local c = counters(cid)
  if redis.call('HSETNX', person, cid .. ':conv', now) == 1 then
    redis.call('HINCRBY', c, group .. ':conversions', 1)
    redis.call('HINCRBYFLOAT', c, group .. ':xy_sum', tonumber(x) or 0)
    if decile and decile ~= '' then redis.call('HINCRBY', c, 'd' .. decile .. ':' .. group .. ':conversions', 1) end
    out[#out + 1] = cid .. '|' .. group .. '|conversion'
  end
  if value > 0 then
    local old = tonumber(redis.call('HGET', person, cid .. ':rev') or '0')
    local new = old + value
    redis.call('HSET', person, cid .. ':rev', new)
    redis.call('HINCRBYFLOAT', c, group .. ':revenue', value)
    redis.call('HINCRBYFLOAT', c, group .. ':revenue_sq', new * new - old * old)
  end
end
"""

# One call per batch that needs it. KEYS[1]: the visitor's profile (whose ``customer`` field
# says who the person is), KEYS[2]: the visitor's campaign record. The customer's record and
# the counters are derived from the pieces store.keys gives (ARGV 1 to 3), so they share the
# tenant's cluster slot. ARGV: customer record prefix, counters prefix and suffix, now, person
# ttl, click attribution window, the model counters' id prefix, the holdout's id, then ops of
# 6 fields each (kind, a, b, c, d, e):
#   imp/clk  cid group decile source hgroup   a verified offer response
#   clkmark  product source decile '' ''      a click on a model offer (for its conversion)
#   conv     cid value ''    ''     ''        a content offer's click: a conversion
#   buy      product value '' '' ''           a purchase
#   ident    customer '' '' '' ''             the visitor logged in as this customer
#   fire     cid active_s delay_s mode arg    open a trigger window (mode: ''|first|segment)
#   watch    cid product '' '' ''             cart trigger: a purchase of product cancels
#   product  cid product window_s '' ''       campaign cid offers product (for buys)
_LUA = (
    """
local cpre, kpre, ksuf = ARGV[1], ARGV[2], ARGV[3]
local now, ttl, click_window = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local cust = redis.call('HGET', KEYS[1], 'customer')
local person = KEYS[2]
if cust then person = cpre .. cust end
local function counters(cid) return kpre .. cid .. ksuf end
local function monitor(src) return counters(ARGV[7] .. src) end
local products, watches, out, first_login = {}, {}, {}, false
local H = 8
local n = (#ARGV - H) / 6
local function op(i) local b = H + (i - 1) * 6 return ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6] end
for i = 1, n do
  local kind, a, b, c = op(i)
  if kind == 'product' then products[#products + 1] = {a, b, tonumber(c)} end
  if kind == 'watch' then watches[#watches + 1] = {a, b} end
end
"""
    + CONVERT_LUA
    + """
local function assigned_at(cid)
  local rec = redis.call('HGET', person, cid)
  if not rec then return nil end
  return tonumber(string.match(rec, '^[^|]*|([^|]*)'))
end
for i = 1, n do
  local kind, a, b, c, d, e = op(i)
  if kind == 'imp' or kind == 'clk' then
    local what = (kind == 'imp') and 'impressions' or 'clicks'
    if a ~= '' then
      redis.call('HINCRBY', counters(a), b .. ':' .. what, 1)
      if c ~= '' then redis.call('HINCRBY', counters(a), 'd' .. c .. ':' .. b .. ':' .. what, 1) end
    end
    if e ~= '' then redis.call('HINCRBY', counters(ARGV[8]), e .. ':' .. what, 1) end
    if d ~= '' and c ~= '' then redis.call('HINCRBY', monitor(d), 'd' .. c .. ':' .. what, 1) end
  elseif kind == 'clkmark' then
    -- a click on a model offer: a purchase of it within the window converts for the model
    redis.call('HSET', person, 'clk:' .. a, b .. '|' .. c .. '|' .. now)
  elseif kind == 'conv' then
    convert(a, tonumber(b) or 0)
  elseif kind == 'buy' then
    local value = tonumber(b) or 0
    convert(ARGV[8], value)
    for _, p in ipairs(products) do
      if p[2] == a then
        local at = assigned_at(p[1])
        if at and now - at <= p[3] then convert(p[1], value) end
      end
    end
    for _, w in ipairs(watches) do
      if w[2] == a then
        local trig = redis.call('HGET', person, w[1] .. ':trig')
        if trig and tonumber(string.match(trig, '^([^|]*)')) > now then
          redis.call('HDEL', person, w[1] .. ':trig')  -- bought in time: no abandoned cart
        end
      end
    end
    local clicked = redis.call('HGET', person, 'clk:' .. a)
    if clicked then
      local src, decile, at = string.match(clicked, '^([^|]*)|([^|]*)|([^|]*)')
      if now - tonumber(at) <= click_window and decile ~= '' then
        redis.call('HINCRBY', monitor(src), 'd' .. decile .. ':conversions', 1)
      end
      redis.call('HDEL', person, 'clk:' .. a)
    end
  elseif kind == 'ident' then
    -- The person keeps the groups the visitor had: the visitor's records move to the customer
    -- unless the customer has one already (an earlier device wins).
    local target = cpre .. a
    local flat = redis.call('HGETALL', KEYS[2])
    for j = 1, #flat, 2 do redis.call('HSETNX', target, flat[j], flat[j + 1]) end
    first_login = redis.call('HSETNX', target, 'seen:login', now) == 1
    redis.call('EXPIRE', target, ttl)
    person = target
  elseif kind == 'fire' then
    local ok = true
    if d == 'first' then ok = first_login end
    if d == 'segment' then
      local seg = redis.call('HGET', KEYS[1], 'zip_segment_id')
      ok = false
      if seg then for s in string.gmatch(e, '[^,]+') do if s == seg then ok = true end end end
    end
    if ok then
      local from = now + (tonumber(c) or 0)
      redis.call('HSET', person, a .. ':trig', from .. '|' .. (from + tonumber(b)))
      out[#out + 1] = a .. '||trigger'
    end
  end
end
redis.call('EXPIRE', person, ttl)
return out
"""
)


def _value(event: dict) -> float:
    if event.get("value") is not None:
        return float(event["value"])
    if event.get("price") is not None:
        return float(event["price"]) * int(event.get("quantity") or 1)
    return 0.0


class CampaignEvents:
    """The collect-time half of campaigns; one per process."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._script: HotScript | None = None
        self._campaigns: dict[str, tuple[int, list[Campaign]]] = {}

    def campaigns(self, r: redis.Redis, tenant: str, version: int | None = None) -> list[Campaign]:
        """Every campaign of the tenant, reloaded when the version moves: a campaign created a
        moment ago already counts (a time-based cache lost its first second's purchases and
        triggers). ``version`` is the campaigns version when the caller read it already (the
        ingest script returns it); without it, one GET."""
        if version is None:
            version = int(r.get(keys.campaigns_version(tenant)) or 0)
        hit = self._campaigns.get(tenant)
        if hit is None or hit[0] != version:
            hit = self._campaigns[tenant] = (version, list_campaigns(r, tenant))
        return hit[1]

    def record(
        self,
        r: redis.Redis,
        tenant: Tenant,
        visitor: str,
        accepted: list[dict],
        claims: dict[str, tokens.TokenClaims],
        now: float | None = None,
        campaigns_version: int | None = None,
    ) -> list[str]:
        """Apply the accepted events of one batch; ``claims`` by event id. Returns what moved
        (``<campaign>|<group>|conversion`` and ``<campaign>||trigger`` entries).
        ``campaigns_version``: the tenant's, when the caller has it (``IngestResult``)."""
        now = time.time() if now is None else now
        ops: list[tuple] = []
        known: list[Campaign] | None = None

        def every() -> list[Campaign]:
            nonlocal known
            if known is None:
                known = self.campaigns(r, tenant.name, campaigns_version)
            return known

        def campaigns() -> list[Campaign]:  # those whose triggers fire now
            return [c for c in every() if c.live(now)]

        for event in accepted:
            kind = event["type"]
            claim = claims.get(event["id"])
            if kind in OFFER_EVENTS and claim is not None and not event.get("unverified"):
                ops.append(self._response(kind, claim))
                if kind == "offer_click" and claim.model_version and claim.decile:
                    ops.append(("clkmark", claim.product_id, claim.model_version, claim.decile))
                content = next(
                    (c for c in every() if c.id == claim.campaign_id and c.content), None
                )
                if kind == "offer_click" and content is not None:
                    ops.append(("conv", content.id, content.value_per_conversion or 0.0))
            elif kind == "purchase":
                ops.append(("buy", event["product_id"], _value(event)))
                for c in campaigns():
                    trig = c.trigger or {}
                    if (
                        trig.get("on") == "purchase"
                        and trig.get("product_id") == event["product_id"]
                    ):
                        ops.append(("fire", c.id, trig["active_minutes"] * 60, 0))
            elif kind == "identify":
                ops.append(("ident", event["customer"]))
                for c in campaigns():
                    trig = c.trigger or {}
                    if trig.get("on") == "first_identify":
                        ops.append(("fire", c.id, trig["active_minutes"] * 60, 0, "first"))
            elif kind == "add_to_cart":
                for c in campaigns():
                    trig = c.trigger or {}
                    if trig.get("on") == "cart_abandon" and trig.get("product_id") == event.get(
                        "product_id"
                    ):
                        ops.append(
                            ("fire", c.id, trig["active_minutes"] * 60, trig["minutes"] * 60)
                        )
            elif kind == "zip":
                for c in campaigns():
                    trig = c.trigger or {}
                    if trig.get("on") == "segment_enter":
                        segments = ",".join(str(s) for s in trig["segments"])
                        ops.append(
                            ("fire", c.id, trig["active_minutes"] * 60, 0, "segment", segments)
                        )
        if not ops:
            return []
        if any(o[0] == "buy" for o in ops):
            # Paused and ended campaigns still count the purchases of people assigned while
            # they ran, within each person's attribution window (the script checks it).
            for c in every():
                window = c.attribution_days * DAY_S
                if c.product_id is not None and (
                    c.status != "ended" or now - c.updated_at <= window
                ):
                    ops.insert(0, ("product", c.id, c.product_id, window))
                trig = c.trigger or {}
                if trig.get("on") == "cart_abandon":
                    ops.insert(0, ("watch", c.id, trig["product_id"]))
        return self._run(r, tenant.name, visitor, ops, now)

    @staticmethod
    def _response(kind: str, claim: tokens.TokenClaims) -> tuple:
        return (
            "imp" if kind == "offer_impression" else "clk",
            claim.campaign_id or "",
            claim.group or "",
            claim.decile or "",
            claim.model_version or "",
            claim.holdout_group or "",
        )

    def _run(
        self, r: redis.Redis, tenant: str, visitor: str, ops: list[tuple], now: float
    ) -> list[str]:
        if self._script is None or self._client is not r:
            self._client, self._script = r, HotScript(r, _LUA)
        prefix, suffix = keys.campaign_counters_parts(tenant)
        flat: list[str | int | float] = [
            keys.person_campaigns(tenant, "c:"), prefix, suffix,
            repr(now), PERSON_TTL_S, CLICK_ATTRIBUTION_S, MODEL_COUNTERS, HOLDOUT,
        ]  # fmt: skip
        for o in ops:
            flat += [*o, *("",) * (6 - len(o))]
        reply = self._script(
            [keys.visitor_key(tenant, visitor), keys.person_campaigns(tenant, f"v:{visitor}")],
            flat,
        )
        return [v.decode() if isinstance(v, bytes) else v for v in reply or []]
