"""Contact lists for offline channels: a campaign's audience among the live CRM customers, best
scored first, split into the people to contact and the control group held back.

The audience is decided by the rules serving applies (``campaigns.audience.in_audience``, with
the customer's ZIP block chosen as serving chooses it and their live CRM attributes), minus the
people who hold the offered product and those who opted out. Scores come from the champion
model through the batch scorer (``models.batch.score_table``: the feature builder of training
and real time). People in the tenant-wide holdout's control group are left out, as serving
shows them no campaign.

Every listed person is recorded as serving records the people it serves
(``campaigns.assignment.record_listed``: the first record wins, so a person already assigned
on the web keeps their group, and the first record counts them into it), so the report's
intention-to-treat counts cover lists and web alike. The control rows are measured but not
contacted. Responses from the channel come back through ``campaigns.responses``; the files
around a list (the tenant's extract, the CSV) are ``campaigns.contact_files``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from campaigns.assignment import (
    CONTROL,
    HOLDOUT,
    TREATED,
    Listed,
    PersonState,
    draw,
    parse_person,
    record_listed,
)
from campaigns.audience import Who, in_audience
from campaigns.contact_files import (
    Contact,
    ContactList,
    ContactListError,
    Extract,
    flag_column,
    read_extract,
    truthy,
)
from campaigns.definitions import Campaign, get_campaign
from enrichment.crm import CrmError, LiveTables, live_tables
from models import registry
from models.batch import score_table
from models.bundle import load_bundle
from models.features import ZipLookup, zip_block_for
from models.serving import Bundle
from store import keys
from store.config import Settings
from store.tenants import Tenant

READ_PIPELINE = 5000  # person records read per round trip (the holdout check)
COVARIATE = "log(1 + products held) in the live CRM version at export"
# Why customers are not on a list, in the order they are tested.
EXCLUSIONS = ("holders", "opted_out", "not_in_audience", "not_in_customers_file",
              "below_min_score", "holdout", "beyond_top")  # fmt: skip


@dataclass(frozen=True)
class ExportOptions:
    top: int | None = None  # the best K of the audience, control group included
    min_score: float | None = None
    opt_out_column: str | None = None  # None: the first of OPT_OUT_COLUMNS present
    customers: Path | None = None  # the tenant's extract: raw ids and contact columns
    id_column: str = "customer_id"
    contact_columns: tuple[str, ...] = ()


# -- what can be exported -------------------------------------------------------------------


def _refuse_unless_exportable(campaign: Campaign, now: float) -> str:
    """The product the list is ranked by; raises ContactListError for what no list can be."""
    if campaign.trigger:
        raise ContactListError(
            f"audience.trigger: campaign {campaign.name!r} targets people when an event "
            "happens on the site; a trigger audience has no list to export"
        )
    if campaign.audience.get("visitors") == "anonymous":
        raise ContactListError(
            "audience.visitors: an audience of anonymous visitors has no CRM customers to contact"
        )
    if not campaign.live(now):
        why = (
            f"is {campaign.status}"
            if campaign.status != "running"
            else "is outside its schedule (start and end)"
        )
        raise ContactListError(f"status: campaign {campaign.name!r} {why}; nobody can join it")
    product = campaign.product_id or (campaign.audience.get("score") or {}).get("product_id")
    if product is None:
        raise ContactListError(
            "offer: a content offer without a score audience has no product to rank people by; "
            "add audience.score"
        )
    return product


def _champion(r: redis.Redis, settings: Settings, tenant: str, products: Iterable[str]) -> Bundle:
    version = registry.champion(r, tenant)
    if version is None:
        raise ContactListError(
            f"model: tenant {tenant!r} has no champion model to score the list "
            f"(offerwise train --tenant {tenant})"
        )
    try:
        bundle = load_bundle(settings, tenant, version)
    except (OSError, ValueError) as err:
        raise ContactListError(f"model: version {version} cannot be loaded ({err})") from None
    for product in products:
        if product not in bundle.product_ids:
            raise ContactListError(
                f"model: the champion model ({version}) does not score {product!r}"
            )
    return bundle


# -- the audience -----------------------------------------------------------------------------


def _values(table: pa.Table, name: str | None) -> list:
    """A column's values as serving profiles hold them (dates as ISO text); None if absent."""
    if name is None or name not in table.column_names:
        return [None] * table.num_rows
    column = table.column(name)
    if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        column = pc.cast(pc.cast(column, pa.date32()), pa.string())
    return column.to_pylist()


def _score_lookup(
    bundle: Bundle, index: dict[str, int], row: np.ndarray
) -> Callable[[str, float | None], tuple[float, float | None] | None]:
    def score(product_id: str, top_share: float | None) -> tuple[float, float | None] | None:
        j = index.get(product_id)
        if j is None:
            return None
        top = bundle.threshold_for_top(product_id, top_share) if top_share else None
        return float(row[j]), top

    return score


def _holdings_facts(
    holdings: pa.Table | None, product: str | None
) -> tuple[set[str], dict[str, int]]:
    """Who holds the offered product, and how many products each customer holds."""
    if holdings is None or holdings.num_rows == 0:
        return set(), {}
    held = holdings.column("customer_hash").value_counts().to_pylist()
    counts = {d["values"]: int(d["counts"]) for d in held}
    holders: set[str] = set()
    if product is not None:
        mask = pc.equal(holdings.column("product_id"), product)
        holders = set(holdings.filter(mask).column("customer_hash").to_pylist())
    return holders, counts


@dataclass
class _Scan:
    """The audience found in the live CRM version, before the holdout and the top K."""

    candidates: list[tuple[str, float]] = field(default_factory=list)  # (hash, score)
    scanned: int = 0
    excluded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EXCLUSIONS, 0))


def _scan(
    campaign: Campaign,
    product: str,
    bundle: Bundle,
    tables: LiveTables,
    holdings: pa.Table | None,
    holders: set[str],
    crm_flag: str | None,
    extract: Extract | None,
    min_score: float | None,
    zips: ZipLookup,
    now: float,
) -> _Scan:
    out = _Scan()
    index = {p: j for j, p in enumerate(bundle.product_ids)}
    at = index[product]
    rule_attributes = sorted({f["attribute"] for f in campaign.audience.get("crm") or ()})
    nobody = PersonState()  # no trigger: refused before
    for table in tables.customer_batches():
        out.scanned += table.num_rows
        scores = score_table(bundle, table, holdings, zips, key="customer_hash")
        zip_codes = _values(table, "zip")
        attributes = {a: _values(table, a) for a in rule_attributes}
        flags = _values(table, crm_flag)
        for i, h in enumerate(table.column("customer_hash").to_pylist()):
            if h in holders:
                out.excluded["holders"] += 1
                continue
            in_file = extract.rows.get(h) if extract is not None else None
            if truthy(flags[i]) or (in_file is not None and in_file[2]):
                out.excluded["opted_out"] += 1
                continue
            z = zip_codes[i]
            block = zip_block_for(None, {"zip": z} if z else None, zips) or {}
            segment = block.get("segment_id")
            who = Who(
                identified=True,
                segment=int(segment) if segment not in (None, "") else None,
                state=block.get("state_code"),
                crm={a: attributes[a][i] for a in rule_attributes},
                person=nobody,
                score=_score_lookup(bundle, index, scores[i]),
                decile=bundle.decile,
            )
            if not in_audience(campaign, who, now):
                out.excluded["not_in_audience"] += 1
            elif extract is not None and in_file is None:
                out.excluded["not_in_customers_file"] += 1
            elif min_score is not None and scores[i, at] < min_score:
                out.excluded["below_min_score"] += 1
            else:
                out.candidates.append((h, float(scores[i, at])))
    return out


def _holdout_groups(r: redis.Redis, tenant: Tenant, hashes: list[str]) -> list[str]:
    """Each person's group in the tenant-wide holdout: recorded, else drawn (as serving)."""
    out: list[str] = []
    for start in range(0, len(hashes), READ_PIPELINE):
        chunk = hashes[start : start + READ_PIPELINE]
        pipe = r.pipeline(transaction=False)
        for h in chunk:
            pipe.hget(keys.person_campaigns(tenant.name, f"c:{h}"), HOLDOUT)
        for h, recorded in zip(chunk, pipe.execute(), strict=True):
            if recorded is not None:
                out.append(parse_person({HOLDOUT: recorded}).groups[HOLDOUT])
            elif tenant.holdout_share > 0:
                out.append(draw(tenant.id_secret, HOLDOUT, f"c:{h}", tenant.holdout_share))
            else:
                out.append(TREATED)
    return out


def offline_covariate(products_held: int) -> float:
    """The pre-assignment covariate recorded for a listed person (the report's adjustment):
    products held, on the log scale serving uses for its event counts. Unbiased whatever it
    is, being fixed before the draw; it only narrows the interval as far as it predicts."""
    return round(math.log1p(products_held), 4)


def _people(r: redis.Redis, tenant: str, campaign_id: str) -> int:
    raw = r.hmget(
        keys.campaign_counters(tenant, campaign_id), [f"{g}:people" for g in (TREATED, CONTROL)]
    )
    return sum(int(v or 0) for v in raw)


# -- the export -----------------------------------------------------------------------------


def export_contacts(
    r: redis.Redis,
    settings: Settings,
    tenant: Tenant,
    name: str,
    options: ExportOptions,
    now: float | None = None,
) -> ContactList:
    """Select, score and split a campaign's contact list, and record every listed person's
    group (see the module's docstring). Writes no file: see ``contact_files.write_contacts``."""
    now = time.time() if now is None else now
    campaign = get_campaign(r, tenant.name, name)
    product = _refuse_unless_exportable(campaign, now)
    rule_product = (campaign.audience.get("score") or {}).get("product_id")
    bundle = _champion(r, settings, tenant.name, {product, *filter(None, [rule_product])})
    try:
        tables = live_tables(r, settings, tenant.name)
    except CrmError as err:
        raise ContactListError(f"crm: {err}") from None
    if tables is None:
        raise ContactListError(f"crm: tenant {tenant.name!r} has no CRM extract live")
    # Opted out in either place is opted out: the CRM attribute and the extract's column.
    crm_flag = flag_column(options.opt_out_column, tables.attributes)
    extract = None
    if options.customers is not None:
        extract = read_extract(
            tenant, options.customers, options.id_column, options.contact_columns,
            options.opt_out_column,
        )  # fmt: skip
    if options.opt_out_column and not (crm_flag or (extract and extract.opt_out_column)):
        raise ContactListError(
            f"opt_out_column: no CRM attribute {options.opt_out_column!r}"
            + (" and no such column in the customers file" if extract is not None else "")
        )

    holdings = tables.holdings()
    holders, held_counts = _holdings_facts(holdings, campaign.product_id)
    found = _scan(
        campaign, product, bundle, tables, holdings, holders, crm_flag, extract,
        options.min_score, ZipLookup(settings), now,
    )  # fmt: skip
    holdout = _holdout_groups(r, tenant, [h for h, _ in found.candidates])
    kept = [c for c, g in zip(found.candidates, holdout, strict=True) if g != CONTROL]
    found.excluded["holdout"] = len(found.candidates) - len(kept)
    kept.sort(key=lambda c: (-c[1], c[0]))
    if options.top is not None:
        found.excluded["beyond_top"] = max(0, len(kept) - options.top)
        kept = kept[: options.top]

    contacts = [Contact(h, round(s, 6), bundle.decile(product, s)) for h, s in kept]
    before = _people(r, tenant.name, campaign.id)
    groups = record_listed(
        r, tenant.name, campaign.id,
        [
            Listed(
                f"c:{c.customer_hash}",
                draw(tenant.id_secret, campaign.id, f"c:{c.customer_hash}", campaign.control_share),
                offline_covariate(held_counts.get(c.customer_hash, 0)),
                c.decile,
            )
            for c in contacts
        ],
        now,
    )  # fmt: skip
    for contact, group in zip(contacts, groups, strict=True):
        contact.group = group
        if extract is not None:
            contact.customer_id, contact.contact, _ = extract.rows[contact.customer_hash]
    summary = {
        "campaign": campaign.name,
        "campaign_id": campaign.id,
        "channel": campaign.channel.get("type", "web"),
        "product_id": product,
        "model_version": bundle.version,
        "crm_version": tables.version,
        "customers": found.scanned,
        "excluded": found.excluded,
        "opt_out_columns": {
            "crm": crm_flag,
            "customers_file": extract.opt_out_column if extract else None,
        },
        "listed": len(contacts),
        "treated": sum(c.group == TREATED for c in contacts),
        "control": sum(c.group == CONTROL for c in contacts),
        # People this export put in the campaign (the others were in it already; a web visit
        # assigning someone meanwhile would count here too).
        "newly_assigned": _people(r, tenant.name, campaign.id) - before,
        "covariate": COVARIATE,
    }
    if extract is not None:
        summary["customers_file_rows_without_id"] = extract.rows_without_id
    return ContactList(campaign, contacts, extract is not None, options.contact_columns, summary)
