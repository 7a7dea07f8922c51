"""Running campaigns applied to one offer request, inside the same request budget.

The offers the model (or popularity) ranked are the baseline. Each live web campaign whose
audience the person is in, highest priority first, draws the person's group (or reads the one
recorded); a treated person sees the campaign's offer at the head of the list, a control person
sees exactly the baseline, and both count one exposure (the control's is the one it would have
had), so the report compares like with like. One script call records what the request touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.assignment import HOLDOUT, TREATED, PersonState, Touch, draw
from campaigns.audience import Who, in_audience
from campaigns.definitions import Campaign
from models.popularity import Offer

CAMPAIGN_REASON = ("Selected for you", "campaign")


def _campaign_offer(campaign: Campaign, products: dict[str, dict]) -> Offer | None:
    if campaign.product_id is not None:
        product = products.get(campaign.product_id)
        if product is None or not product.get("active", True):
            return None  # gone from the catalog since the campaign was made: nothing to show
    else:
        content = campaign.content or {}
        product = {
            "product_id": content["id"],
            "name": content["title"],
            "category": "content",
            "price": None,
            "url": content["url"],
            "image_url": content.get("image_url"),
        }
    return Offer(product, 1.0, *CAMPAIGN_REASON, campaign=campaign.name, campaign_id=campaign.id)


@dataclass
class Applied:
    placed: list[Offer]  # campaign offers within the n slots, with the drawn group
    touches: list[Touch]


def choose(
    campaigns: list[Campaign],
    who: Who,
    secret: bytes,
    person: str,
    products: dict[str, dict],
    n: int,
    now: float,
) -> Applied:
    """The campaigns that touch this request, with the person's drawn (or recorded) group."""
    touches: list[Touch] = []
    placed: list[Offer] = []
    for campaign in campaigns:
        if not campaign.live(now) or not in_audience(campaign, who, now):
            continue
        offer = _campaign_offer(campaign, products)
        if offer is None:
            continue
        group = who.person.groups.get(campaign.id) or draw(
            secret, campaign.id, person, campaign.control_share
        )
        exposed = len(placed) < n
        pid = campaign.product_id
        found = who.score(pid, None) if pid is not None else None
        decile = who.decile(pid, found[0]) if pid is not None and found else None
        touches.append(Touch(campaign.id, group, exposed, decile))
        if exposed:
            offer.group = group
            placed.append(offer)
    return Applied(placed, touches)


def settle(applied: Applied, recorded: dict[str, str], base: list[Offer], n: int) -> list[Offer]:
    """The offers once the store has said each campaign's actual group (an earlier record,
    say from a concurrent request, wins over this request's draw): the treated campaigns'
    offers first, then the baseline without them, n in all."""
    for offer in applied.placed:
        offer.group = recorded.get(offer.campaign_id or "", offer.group)
    shown = [o for o in applied.placed if o.group == TREATED]
    taken = {o.product["product_id"] for o in shown}
    return (shown + [o for o in base if o.product["product_id"] not in taken])[:n]


def holdout_touch(
    tenant_secret: bytes, share: float, person: str, state: PersonState
) -> tuple[str, Touch | None]:
    """The person's group in the tenant-wide holdout (control: popularity only), and a touch
    to record when it is drawn now."""
    recorded = state.groups.get(HOLDOUT)
    if recorded:
        return recorded, None
    group = draw(tenant_secret, HOLDOUT, person, share) if share > 0 else TREATED
    return group, Touch(HOLDOUT, group, exposed=False)
