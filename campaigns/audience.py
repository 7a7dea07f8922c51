"""Is this person in a campaign's audience? Evaluated per offer request, cheapest test first.

A score audience needs the product's model score, which costs a scoring pass when the request
was answered without the model; it is asked for last, only when every other condition holds,
and computed at most once per request (``Who.score`` is a lazy callback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from campaigns.assignment import PersonState
from campaigns.definitions import Campaign


@dataclass
class Who:
    """What the audience tests may look at, for the person being served."""

    identified: bool
    segment: int | None
    state: str | None
    crm: dict | None  # the live CRM attributes of an identified customer
    person: PersonState
    blocked: set[str] = field(default_factory=set)  # held, in cart, just bought, excluded
    placement: str | None = None
    # product id -> (score, threshold for a top share) from the champion; None when unscored.
    score: Callable[[str, float | None], tuple[float, float | None] | None] = field(
        default=lambda _pid, _share: None
    )
    # The decile of a score on the product's model (1: top 10%); None without a model.
    decile: Callable[[str, float], int | None] = field(default=lambda _pid, _score: None)


_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


def _same(have: object, want: object) -> bool:
    """Equality as an admin means it: a boolean CRM attribute (stored true/false) equals
    "yes"/"no"/1/0 as written in a filter, a number equals its text, text ignores case."""
    if isinstance(have, bool):
        text = str(want).strip().lower()
        return (text in _TRUE) if have else (text in _FALSE)
    if have == want:
        return True
    return str(have).strip().lower() == str(want).strip().lower()


def _crm_ok(rule: dict, attributes: dict | None) -> bool:
    if attributes is None or rule["attribute"] not in attributes:
        return False
    have, want, op = attributes[rule["attribute"]], rule["value"], rule["op"]
    if have is None:
        return False
    if op == "in":
        return any(_same(have, w) for w in want)
    if op in ("eq", "ne"):
        same = _same(have, want)
        return same if op == "eq" else not same
    try:
        have_f, want_f = float(have), float(want)
    except (TypeError, ValueError):
        return False
    return {
        "lt": have_f < want_f,
        "le": have_f <= want_f,
        "gt": have_f > want_f,
        "ge": have_f >= want_f,
    }[op]


def in_audience(campaign: Campaign, who: Who, now: float) -> bool:
    """True when the person qualifies now. The offer itself must be offerable to them: a
    product they hold, have in the cart or just bought is no offer (the rules say the same of
    model offers)."""
    placement = campaign.channel.get("placement")
    if placement and who.placement and placement != who.placement:
        return False
    if campaign.product_id is not None and campaign.product_id in who.blocked:
        return False
    a = campaign.audience
    visitors = a.get("visitors", "all")
    if (visitors == "identified" and not who.identified) or (
        visitors == "anonymous" and who.identified
    ):
        return False
    if a.get("segments") and who.segment not in a["segments"]:
        return False
    if a.get("states") and (who.state or "").upper() not in {s.upper() for s in a["states"]}:
        return False
    if a.get("crm") and not all(_crm_ok(rule, who.crm) for rule in a["crm"]):
        return False
    if a.get("trigger") and not who.person.triggered(campaign.id, now):
        return False
    score_rule = a.get("score")
    if score_rule:
        found = who.score(score_rule["product_id"], score_rule.get("top_share"))
        if found is None:
            return False
        score, top_threshold = found
        threshold = score_rule.get("min", top_threshold)
        if threshold is None or score < threshold:
            return False
    return True
