"""Responses from an offline channel: the file a mail house or call centre sends back closes the
loop of a contact list and feeds the same report as the web.

Each row names a person (``customer_id``, hashed with the tenant key as the CRM import hashes
it, or ``customer_hash``), when they responded (``responded_at``: ISO 8601, a date, or epoch
seconds; default now) and what it was worth (``value``; default the campaign's value per
conversion). A row counts as a conversion of the person's recorded group by the collect
script's own definition (``campaigns.measure.CONVERT_LUA``: once per person, revenue added),
only for a person assigned to the campaign and within the attribution window from their
assignment. One response per person and campaign is kept (``store.keys.campaign_responses``),
so importing the same file again changes nothing. Rows that cannot count are reported with
their row number and the reason.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import redis

from campaigns.assignment import GROUPS, PERSON_TTL_S
from campaigns.contact_files import ContactListError
from campaigns.definitions import Campaign, get_campaign
from campaigns.measure import CONVERT_LUA, DAY_S
from enrichment.crm import get_customer, hash_customer_ids
from models.batch import BatchError, read_batches
from store import keys
from store.redis_client import pipeline_script, reply_text
from store.tenants import Tenant

ID_COLUMNS = ("customer_id", "customer_hash")
HASH_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_REPORTED_ERRORS = 1000
FUTURE_SKEW_S = 300.0  # clocks differ; a response later than this is refused
SCRIPT_PIPELINE = 2000

# One call per row. KEYS[1]: the person's campaign record, KEYS[2]: the campaign's counters,
# KEYS[3]: its imported responses. ARGV: campaign id, customer hash, earliest and latest time
# the response may have happened (equal unless only its date is known), value, attribution
# window in seconds, person ttl, the response as stored (to tell a re-import from another one).
# Replies {'counted', group, 1 if a new conversion}, {'same'}, {'other'}, {'unassigned'},
# {'before', assigned at} or {'late', assigned at}; only 'counted' wrote anything.
_RESPOND = (
    """
local cid, who = ARGV[1], ARGV[2]
local earliest, latest, value = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local person, now, out = KEYS[1], 0, {}
local function counters(_) return KEYS[2] end
"""
    + CONVERT_LUA
    + """
local rec = redis.call('HGET', person, cid)
if not rec then return {'unassigned'} end
local group, at = string.match(rec, '^([^|]*)|([^|]*)')
at = tonumber(at)
if latest < at then return {'before', tostring(at)} end
if earliest - at > tonumber(ARGV[6]) then return {'late', tostring(at)} end
if redis.call('HSETNX', KEYS[3], who, ARGV[8]) == 0 then
  if redis.call('HGET', KEYS[3], who) == ARGV[8] then return {'same'} end
  return {'other'}
end
now = math.max(earliest, at)
convert(cid, value)
redis.call('EXPIRE', person, ARGV[7])
return {'counted', group, #out}
"""
)


@dataclass(frozen=True)
class Response:
    row: int
    customer_hash: str
    earliest: float
    latest: float
    value: float
    stored: bytes  # what the file said, normalised: a re-import compares equal


def parse_time(text: str | None, now: float) -> tuple[float, float, float | None]:
    """(earliest, latest, as given) of a ``responded_at`` cell; raises ValueError."""
    if text is None or not text.strip():
        return now, now, None
    text = text.strip()
    try:
        at = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(at):
            raise ValueError(f"responded_at: {text!r} is not a time")
        if at > 1e11:
            raise ValueError(f"responded_at: {text!r} looks like milliseconds; give seconds")
        return at, at, at
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            start = day.timestamp()
            # Only the day is known: any moment of it may be the response.
            return start, (day + timedelta(days=1)).timestamp() - 1e-3, start
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"responded_at: {text!r} is neither ISO 8601 (2026-03-01T14:30:00Z, 2026-03-01) "
            "nor epoch seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    at = parsed.timestamp()
    return at, at, at


def parse_value(text: object, default: float) -> tuple[float, float | None]:
    """(value, as given) of a ``value`` cell; raises ValueError."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return default, None
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"value: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"value: {text!r} must be a number of 0 or more")
    return value, value


class _Report:
    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.rows = self.counted = self.same = self.rejected = self.conversions = 0
        self.revenue = 0.0
        self.by_group = {g: {"responses": 0, "conversions": 0, "revenue": 0.0} for g in GROUPS}
        self.errors: list[dict] = []
        self.reasons: dict[str, int] = {}

    def reject(self, row: int, reason: str, kind: str) -> None:
        self.rejected += 1
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"row": row, "reason": reason})

    def as_dict(self) -> dict:
        return {
            "campaign": self.campaign.name,
            "campaign_id": self.campaign.id,
            "rows": self.rows,
            "counted": self.counted,
            "conversions": self.conversions,
            "revenue": round(self.revenue, 2),
            "by_group": {
                g: {**v, "revenue": round(float(v["revenue"]), 2)} for g, v in self.by_group.items()
            },
            "already_imported": self.same,
            "rejected": self.rejected,
            "rejected_by_reason": self.reasons,
            "errors": sorted(self.errors, key=lambda e: e["row"]),
            "errors_truncated": self.rejected > len(self.errors),
        }


def _rows(tenant: Tenant, path: Path) -> list[tuple[int, str | None, dict]]:
    """(row, customer hash or None, the row's cells); row 2 is the first under the header."""
    out: list[tuple[int, str | None, dict]] = []
    row = 1
    try:
        for batch in read_batches(path):
            table = pa.Table.from_batches([batch])
            names = set(table.column_names)
            if not names & set(ID_COLUMNS):
                raise ContactListError(
                    f"responses: {path.name} needs a customer_id or customer_hash column; found "
                    f"{', '.join(table.column_names)}"
                )
            hashed = (
                hash_customer_ids(tenant, table.column("customer_id"))
                if "customer_id" in names
                else [None] * table.num_rows
            )
            cells = table.select(
                [c for c in (*ID_COLUMNS, "responded_at", "value") if c in names]
            ).to_pylist()
            for h, cell in zip(hashed, cells, strict=True):
                row += 1
                if h is None:
                    given = cell.get("customer_hash")
                    h = given.strip().lower() if isinstance(given, str) else None
                out.append((row, h, cell))
    except (BatchError, pa.ArrowInvalid, OSError) as err:
        raise ContactListError(f"responses: {path.name} cannot be read ({err})") from None
    return out


def import_responses(
    r: redis.Redis, tenant: Tenant, name: str, path: Path, now: float | None = None
) -> dict:
    """Count the responses of ``path`` (CSV or Parquet) for campaign ``name``; the report says
    how many rows counted and why the others did not."""
    now = time.time() if now is None else now
    campaign = get_campaign(r, tenant.name, name)
    report = _Report(campaign)
    default_value = campaign.value_per_conversion or 0.0
    parsed: list[Response] = []
    for row, h, cell in _rows(tenant, path):
        report.rows += 1
        if not h or not HASH_RE.match(h):
            which = "customer_id" if "customer_id" in cell else "customer_hash"
            reason = f"{which}: missing" if not h else f"{which}: not a customer hash"
            report.reject(row, reason, "no_customer")
            continue
        try:
            earliest, latest, at = parse_time(_text(cell.get("responded_at")), now)
            value, given = parse_value(cell.get("value"), default_value)
        except ValueError as err:
            report.reject(row, str(err), "unreadable")
            continue
        if earliest > now + FUTURE_SKEW_S:
            report.reject(
                row, f"responded_at: {cell.get('responded_at')!r} is in the future", "future"
            )
            continue
        stored = orjson.dumps({"at": at, "value": given})
        parsed.append(Response(row, h, earliest, latest, value, stored))
    _count(r, tenant, campaign, parsed, report)
    return report.as_dict()


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.isoformat()
    return str(value)


def _count(
    r: redis.Redis, tenant: Tenant, campaign: Campaign, parsed: list[Response], report: _Report
) -> None:
    script = r.register_script(_RESPOND)
    counters = keys.campaign_counters(tenant.name, campaign.id)
    answers = keys.campaign_responses(tenant.name, campaign.id)
    window = campaign.attribution_days * DAY_S
    unassigned: list[Response] = []
    for start in range(0, len(parsed), SCRIPT_PIPELINE):
        chunk = parsed[start : start + SCRIPT_PIPELINE]
        pipe = r.pipeline(transaction=False)
        for p in chunk:
            pipeline_script(
                pipe,
                script,
                [keys.person_campaigns(tenant.name, f"c:{p.customer_hash}"), counters, answers],
                [campaign.id, p.customer_hash, repr(p.earliest), repr(p.latest),
                 repr(p.value), window, PERSON_TTL_S, p.stored],
            )  # fmt: skip
        for p, reply in zip(chunk, pipe.execute(), strict=True):
            status = reply_text(reply[0])
            if status == "counted":
                group = reply_text(reply[1])
                report.counted += 1
                report.revenue += p.value
                new = int(reply[2]) > 0
                report.conversions += new
                stats = report.by_group[group]
                stats["responses"] += 1
                stats["conversions"] += new
                stats["revenue"] += p.value
            elif status == "same":
                report.same += 1
            elif status == "other":
                report.reject(
                    p.row,
                    "another response of this person was imported before; one response per "
                    "person and campaign counts, the first is kept",
                    "already_responded",
                )
            elif status == "unassigned":
                unassigned.append(p)
            else:
                at = datetime.fromtimestamp(float(reply_text(reply[1])), UTC).isoformat()
                reason = (
                    f"responded_at: before the person was assigned to the campaign ({at})"
                    if status == "before"
                    else f"responded_at: after the attribution window of "
                    f"{campaign.attribution_days} days from the person's assignment ({at})"
                )
                report.reject(p.row, reason, f"{status}_window")
    for p in unassigned:
        # Told apart for the reader: a typo'd id differs from a customer never listed.
        if get_customer(r, tenant.name, p.customer_hash) is None:
            report.reject(
                p.row,
                "unknown customer: not in the live CRM extract, and never assigned to this "
                "campaign",
                "unknown_customer",
            )
        else:
            report.reject(
                p.row,
                "not assigned to this campaign: not on an exported list of it, nor served it",
                "not_assigned",
            )
