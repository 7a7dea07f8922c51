"""GET /v1/recommend's decision: one round trip of reads, then the champion model or cold start.

Reads in one script call (``campaigns.request_reads``): the tenant's rate counter, catalog
version, champion model version, rules version, the top of the popularity set (when this
worker's snapshot is stale) and the visitor's live profile; for an identified visitor also their
CRM profile, campaign record and other devices' profiles. With a champion model,
every product is scored in one pass over the shared feature vector and ranked by expected value
under the tenant's rules; without one, segment popularity, then popularity, then the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from campaigns import tokens
from campaigns.apply import choose, holdout_touch, settle
from campaigns.assignment import (
    CONTROL,
    Assigner,
    ExposureCounts,
    PersonState,
    covariate,
    parse_person,
    person_of,
    read_person,
)
from campaigns.audience import Who
from campaigns.definitions import CampaignCache
from campaigns.request_reads import RequestReads
from campaigns.rules import RulesCache
from clickstream.catalog import CatalogCache
from clickstream.ingest import popularity_key
from clickstream.profiles import VisitorProfile, with_identity
from enrichment.crm import customer_from_reads, get_customer
from models.features import ZipLookup, zip_block_for
from models.popularity import (
    Offer,
    PopularityRecommender,
    PopularitySnapshots,
    popularity_offers,
)
from models.ranking import Context, rank
from models.serving import Bundle, ChampionCache
from store.config import Settings
from store.ratelimit import Refused
from store.tenants import Tenant


@dataclass
class Recommendation:
    offers: list[Offer]
    source: str
    explanations: dict[str, list[dict]] = field(default_factory=dict)
    # Answered from this process's last copies because the store was unreachable.
    degraded: bool = False
    holdout_group: str | None = None  # the person's group in the tenant-wide holdout
    # Gives the model's offers their reasons; called on the offers finally shown, so the
    # slots campaigns take are not explained for nothing.
    tell_reasons: Callable[[list[Offer]], None] | None = field(default=None, repr=False)


class StoreUnavailable(RuntimeError):
    """The store is unreachable and this process holds nothing to answer from."""


def _reason(product: dict, group: str | None, profile: VisitorProfile) -> tuple[str, str]:
    """What the visitor is told, from the feature group that raised the score most (the
    explanation, ``Bundle.reason_groups``): never a group the visitor has nothing of."""
    if group == "web":
        category = product.get("category")
        if category and profile.affinities.get(category, 0.0) >= 0.2:
            return f"Matches your interest in {category}", "model_affinity"
        return "Picked for you from what you have been browsing", "model_browsing"
    if group == "holdings":
        return "Goes well with products you have", "model_holdings"
    if group == "crm":
        return "Picked for you as a customer", "model_customer"
    if group == "zip":
        return "Popular with people like you nearby", "model_segment"
    return "Picked for you", "model"


class Recommender:
    def __init__(
        self, settings: Settings, catalogs: CatalogCache, champions: ChampionCache
    ) -> None:
        self.settings = settings
        self.catalogs = catalogs
        self.champions = champions
        self.rules = RulesCache()
        self.zips = ZipLookup(settings)
        self.popular = PopularitySnapshots(settings.popularity_ttl)
        self.reads = RequestReads()
        self.campaigns = CampaignCache()
        self.assigner = Assigner()
        self.exposures = ExposureCounts()

    def recommend(
        self,
        r: redis.Redis,
        tenant: Tenant,
        visitor: str,
        n: int,
        *,
        exclude: frozenset[str] = frozenset(),
        track: bool = True,
        explain: bool = False,
        placement: str | None = None,
        now: float | None = None,
    ) -> Recommendation:
        now = time.time() if now is None else now
        try:
            result = self._recommend(r, tenant, visitor, n, exclude, track, explain, placement, now)
        except (redis.ConnectionError, redis.TimeoutError):
            result = self._degraded(tenant, n, exclude)
        for i, offer in enumerate(result.offers):
            offer.token = tokens.issue(
                tenant, visitor, offer.product["product_id"], i, result.source, now,
                campaign_id=offer.campaign_id, group=offer.group,
                holdout_group=result.holdout_group, decile=offer.decile,
            )  # fmt: skip
        return result

    def _recommend(
        self,
        r: redis.Redis,
        tenant: Tenant,
        visitor: str,
        n: int,
        exclude: frozenset[str],
        track: bool,
        explain: bool,
        placement: str | None,
        now: float,
    ) -> Recommendation:
        name = tenant.name
        popular_key = popularity_key(name)
        popular = self.popular.fresh(popular_key)
        state = self.reads.read(
            r, name, visitor, read_popular=popular is None, track=track, now=now
        )
        if state.count > tenant.rate_limit:
            raise Refused("rate limit exceeded", retry_after=1)
        if popular is None:
            popular = self.popular.store(popular_key, state.popular or [])
        catalog = self.catalogs.get(r, name, state.catalog_version)
        ident = state.identity  # an identified visitor's reads, made in the same call
        if ident is not None:
            profile = with_identity(r, name, state.profile, ident.linked, ident.others)
            customer = customer_from_reads(r, name, ident.customer, ident.serving_id, ident.blob)
        else:
            profile = with_identity(r, name, state.profile) if track else state.profile
            customer = get_customer(r, name, profile.customer) if profile.customer else None
        blocked = set(exclude) | profile.cart | profile.recently_bought
        if customer:
            blocked |= {h["product_id"] for h in customer.get("holdings", [])}
        rules = self.rules.get(r, name, state.rules_version)
        zip_block = zip_block_for(profile, customer, self.zips)
        segment = (zip_block or {}).get("segment_id")
        ctx = Context(
            identified=customer is not None,
            segment=int(segment) if segment not in (None, "") else None,
            state=(zip_block or {}).get("state_code"),
            blocked=blocked,
        )
        if not track:  # DNT/GPC: contextual offers, no person, so no campaign and no holdout
            offers = popularity_offers(
                r, self.popular, name, catalog.products, catalog.active_ids, popular, profile,
                blocked, n, segment=ctx.segment, rules=rules, ctx=ctx, now=now,
            )  # fmt: skip
            return Recommendation(offers, "popularity")
        person = person_of(visitor, profile.customer)
        if ident is not None:
            record = parse_person(ident.person)
        else:
            record = (
                read_person(r, name, person) if profile.customer else parse_person(state.person)
            )
        holdout, holdout_new = holdout_touch(tenant.id_secret, tenant.holdout_share, person, record)
        touches = [holdout_new] if holdout_new else []
        bundle = self.champions.get(name, state.champion) if holdout != CONTROL else None
        version = bundle
        if bundle is not None and customer is None and bundle.anonymous is not None:
            # A visitor without CRM data is scored by the model of anonymous visitors, which
            # learnt from what such visitors have (web behaviour, ZIP): models.anonymous.
            bundle = bundle.anonymous
        if bundle is None:
            offers = popularity_offers(
                r, self.popular, name, catalog.products, catalog.active_ids, popular, profile,
                blocked, n, segment=ctx.segment, rules=rules, ctx=ctx, now=now,
            )  # fmt: skip
            result = Recommendation(offers, "popularity")
            scores = None
        else:
            assert version is not None
            result, scores = self._model_offers(
                bundle, catalog.products, rules, profile, customer, zip_block, ctx, n,
                explain, now, version,
            )  # fmt: skip
            if version.live is not None:  # this process's drift sample, every few seconds
                version.live.flush_if_due(r)
        result.holdout_group = holdout
        live = [] if holdout == CONTROL else self.campaigns.get(r, name, state.campaigns_version)
        applied = None
        if live:
            who = self._who(
                profile, customer, zip_block, record, blocked, placement, bundle, scores
            )
            applied = choose(live, who, tenant.id_secret, person, catalog.products, n, now)
            touches += applied.touches
        # Only a person's first touch of a campaign needs the store now (the record decides
        # the group); a returning person's exposures are counted in this process and written
        # about once a second, which spared the recommend path a script call per request.
        new = [t for t in touches if t.campaign_id not in record.groups]
        recorded = self.assigner.record(r, name, person, new, covariate(profile.counters), now)
        for t in touches:
            if t.campaign_id in record.groups:
                recorded[t.campaign_id] = record.groups[t.campaign_id]
                if t.exposed:
                    self.exposures.add(r, name, t.campaign_id, record.groups[t.campaign_id])
        self.exposures.flush_if_due(r, now)
        if applied is not None and applied.placed:
            result.offers = settle(applied, recorded, result.offers, n)
        if result.tell_reasons is not None:
            result.tell_reasons(result.offers)
        return result

    @staticmethod
    def _who(
        profile: VisitorProfile,
        customer: dict | None,
        zip_block: Mapping[str, Any] | None,
        record: PersonState,
        blocked: set[str],
        placement: str | None,
        bundle: Bundle | None,
        scores: dict[str, float] | None,
    ) -> Who:
        segment = (zip_block or {}).get("segment_id")

        def score(product_id: str, top_share: float | None) -> tuple[float, float | None] | None:
            if bundle is None or scores is None or product_id not in scores:
                return None
            top = bundle.threshold_for_top(product_id, top_share) if top_share else None
            return scores[product_id], top

        return Who(
            identified=customer is not None,
            segment=int(segment) if segment not in (None, "") else None,
            state=(zip_block or {}).get("state_code"),
            crm=(customer or {}).get("attributes"),
            person=record,
            blocked=blocked,
            placement=placement,
            score=score,
            decile=bundle.decile if bundle is not None else (lambda _pid, _score: None),
        )

    def _degraded(self, tenant: Tenant, n: int, exclude: frozenset[str]) -> Recommendation:
        """While the store is away: the last popularity and catalog this process read, with no
        profile (it cannot be read) and no rate count (it cannot be kept). Collection refuses
        with 503 meanwhile, so nothing is lost that a client would not retry."""
        catalog = self.catalogs.last(tenant.name)
        if catalog is None:
            raise StoreUnavailable("store unavailable and no cached catalog for this tenant")
        popular = self.popular.last(popularity_key(tenant.name)) or []
        offers = PopularityRecommender.rank_and_fill(
            catalog.products, catalog.active_ids, popular, VisitorProfile(""), exclude, n
        )
        return Recommendation(offers, "popularity", degraded=True)

    def _model_offers(
        self,
        bundle: Bundle,
        products: dict[str, dict],
        rules: dict,
        profile: VisitorProfile,
        customer: dict | None,
        zip_block: Mapping[str, Any] | None,
        ctx: Context,
        n: int,
        explain: bool,
        now: float,
        version: Bundle,
    ) -> tuple[Recommendation, dict[str, float]]:
        """``bundle`` scores; ``version`` (the version's customer model, whose feature view the
        drift sample counts for every visitor) monitors."""
        # zip_block is chosen as training chose it (CRM ZIP first, then the typed one).
        x = bundle.builder.live_vector(profile if profile.known else None, customer, zip_block, now)
        walk = bundle.walk(x)
        scores = walk.scores
        ranked = rank(bundle.product_ids, scores, products, rules, ctx, n)
        offers = [
            Offer(
                products[x_.product_id], x_.score, x_.reason, x_.reason_code,
                decile=bundle.decile(x_.product_id, x_.score),
            )
            for x_ in ranked
        ]  # fmt: skip
        if version.live is not None:  # 1 request in models.drift.SAMPLE_EVERY is counted
            seen = profile if profile.known else None
            view = x if version is bundle else (
                lambda: version.builder.live_vector(seen, customer, zip_block, now)
            )  # fmt: skip
            version.live.observe(view, customer is not None, offers)
        explanations = {}
        if explain:
            explanations = bundle.explain(x, products=[o.product["product_id"] for o in offers])
        by_product = dict(zip(bundle.product_ids, scores.tolist(), strict=True))
        result = Recommendation(offers, f"model:{bundle.version}", explanations)

        def tell_reasons(shown: list[Offer]) -> None:
            # Reasons come from the explanation of each shown model offer's score, once the
            # campaigns have taken their places: only those few products' trees are walked.
            told = [o for o in shown if o.campaign_id is None and o.reason_code != "pinned"]
            if not told:
                return
            rows = [bundle.positions[o.product["product_id"]] for o in told]
            groups = bundle.reasons(x, rows, walk)
            for o, group in zip(told, groups, strict=True):
                o.reason, o.reason_code = _reason(o.product, group, profile)

        result.tell_reasons = tell_reasons
        return result, by_product
