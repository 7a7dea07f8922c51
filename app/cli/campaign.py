"""``offerwise campaign``: create, list, show, update, pause, resume, end, report, and contact
lists for offline channels (export, responses); JSON out."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from app.cli.output import emit, exit_if_rows_rejected, fail, store
from app.settings import load_settings
from campaigns import definitions as cmp
from campaigns.assignment import CONTROL, TREATED
from campaigns.contact_files import write_contacts
from campaigns.contacts import ExportOptions, export_contacts
from campaigns.report import campaign_report, holdout_report
from campaigns.responses import import_responses
from enrichment.segments import list_segments
from store.artifacts import atomic_path
from store.tenants import get_tenant

CRM_HELP = "A CRM filter 'attribute op value' (op: eq ne lt le gt ge in; in takes a,b,c)."


def _tenant(r, name: str):
    found = get_tenant(r, name)
    if found is None:
        fail(f"no tenant named {name!r}")
    return found


def _facts(r, tenant: str) -> cmp.TenantFacts:
    settings = load_settings()

    def segment_ids() -> set[int] | None:
        listed = list_segments(settings)
        return {int(s["id"]) for s in listed} if listed else None

    return cmp.tenant_facts(r, tenant, segment_ids)


def _crm_filter(text: str) -> dict:
    parts = text.split(None, 2)
    if len(parts) != 3:
        fail(f"--crm {text!r}: write it as 'attribute op value', e.g. 'tier eq gold'")
    attribute, op, value = parts
    parsed: object
    if op == "in":
        parsed = [_number_or_text(v.strip()) for v in value.split(",") if v.strip()]
    else:
        parsed = _number_or_text(value)
    return {"attribute": attribute, "op": op, "value": parsed}


def _number_or_text(value: str) -> object:
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _definition(options: dict) -> dict:
    """The JSON body of POST /v1/admin/campaigns from the command's options (only what was
    given, so the schema's defaults and messages are the API's)."""
    body: dict = {}
    if options.get("definition"):
        try:
            body = orjson.loads(Path(options["definition"]).read_bytes())
        except (OSError, orjson.JSONDecodeError) as err:
            fail(f"--json {options['definition']}: {err}")
    for name in ("name", "control_share", "cost_per_contact", "value_per_conversion",
                 "priority", "start", "end", "attribution_days"):  # fmt: skip
        if options.get(name) is not None:
            body[name] = options[name]
    if options.get("offer"):
        body["offer"] = {"product_id": options["offer"]}
    elif options.get("content_id"):
        body["offer"] = {
            "content": {
                "id": options["content_id"],
                "title": options.get("content_title") or "",
                "url": options.get("content_url") or "",
            }
        }
    audience = dict(body.get("audience") or {})
    if options.get("segments"):
        audience["segments"] = list(options["segments"])
    if options.get("states"):
        audience["states"] = list(options["states"])
    if options.get("visitors"):
        audience["visitors"] = options["visitors"]
    if options.get("crm"):
        audience["crm"] = [_crm_filter(t) for t in options["crm"]]
    if options.get("score_product"):
        rule: dict = {"product_id": options["score_product"]}
        if options.get("min_score") is not None:
            rule["min"] = options["min_score"]
        if options.get("top_share") is not None:
            rule["top_share"] = options["top_share"]
        audience["score"] = rule
    if options.get("trigger"):
        trigger: dict = {"on": options["trigger"]}
        for key in ("product_id", "minutes", "active_minutes"):
            value = options.get(f"trigger_{key}")
            if value is not None:
                trigger[key] = value
        if options.get("trigger_segments"):
            trigger["segments"] = list(options["trigger_segments"])
        audience["trigger"] = trigger
    if audience:
        body["audience"] = audience
    channel = dict(body.get("channel") or {})
    if options.get("channel"):
        channel["type"] = options["channel"]
    if options.get("placement"):
        channel["placement"] = options["placement"]
    if channel:
        body["channel"] = channel
    return body


def _definition_options(fn):
    decorators = [
        click.option("--json", "definition", type=click.Path(exists=True, dir_okay=False),
                     help="A JSON file with the whole definition (options override it)."),
        click.option("--offer", help="The catalog product offered."),
        click.option("--content-id", help="A content offer's own id (instead of --offer)."),
        click.option("--content-title"),
        click.option("--content-url"),
        click.option("--control-share", type=float, help="Held back as control (default 0.1)."),
        click.option("--cost-per-contact", type=float),
        click.option("--value-per-conversion", type=float),
        click.option("--priority", type=int, help="Higher first among campaigns (default 0)."),
        click.option("--segment", "segments", type=int, multiple=True, help="ZIP segment id."),
        click.option("--state", "states", multiple=True, help="2-letter state (repeatable)."),
        click.option("--visitors", type=click.Choice(["all", "identified", "anonymous"])),
        click.option("--crm", multiple=True, help=CRM_HELP),
        click.option("--score-product", help="Audience by this product's model score..."),
        click.option("--min-score", type=float, help="...at least this calibrated score, or"),
        click.option("--top-share", type=float, help="...in this top share (0.2: top 20%)."),
        click.option("--trigger", type=click.Choice(
            ["first_identify", "purchase", "cart_abandon", "segment_enter"])),
        click.option("--trigger-product", "trigger_product_id"),
        click.option("--trigger-minutes", "trigger_minutes", type=int,
                     help="cart_abandon: minutes without a purchase."),
        click.option("--trigger-segment", "trigger_segments", type=int, multiple=True),
        click.option("--active-minutes", "trigger_active_minutes", type=int,
                     help="How long a triggered offer stays (default 60)."),
        click.option("--channel", type=click.Choice(
            ["web", "email", "direct_mail", "call_centre"])),
        click.option("--placement", help="Web: only this placement."),
        click.option("--start", help="ISO 8601 time (default: now)."),
        click.option("--end", help="ISO 8601 time (default: open-ended)."),
        click.option("--attribution-days", type=int, help="Default 7."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def _run(action):
    try:
        return action()
    except cmp.CampaignError as err:
        fail(str(err))


@click.group()
def campaign() -> None:
    """Campaigns: an offer to an audience through a channel, with a control group."""


@campaign.command()
@click.option("--tenant", required=True)
@click.option("--name", required=True)
@_definition_options
def create(tenant: str, name: str, **options: object) -> None:
    """Create a campaign; it runs at once within its schedule. Prints it as JSON."""
    r = store()
    _tenant(r, tenant)
    body = _definition({**options, "name": name})
    emit(_run(lambda: cmp.create_campaign(r, tenant, body, _facts(r, tenant))).as_dict())


@campaign.command()
@click.option("--tenant", required=True)
@click.argument("name")
@click.option("--new-name", "name_", help="Rename the campaign.")
@_definition_options
def update(tenant: str, name: str, name_: str | None, **options: object) -> None:
    """Change a campaign (its offer and control share are fixed once people are in it)."""
    r = store()
    _tenant(r, tenant)
    body = _definition({**options, "name": name_})
    emit(_run(lambda: cmp.update_campaign(r, tenant, name, body, _facts(r, tenant))).as_dict())


@campaign.command("list")
@click.option("--tenant", required=True)
def list_(tenant: str) -> None:
    """Every campaign, highest priority first."""
    r = store()
    _tenant(r, tenant)
    emit([c.as_dict() for c in cmp.list_campaigns(r, tenant)])


@campaign.command()
@click.option("--tenant", required=True)
@click.argument("name")
def show(tenant: str, name: str) -> None:
    """One campaign's definition."""
    r = store()
    _tenant(r, tenant)
    emit(_run(lambda: cmp.get_campaign(r, tenant, name)).as_dict())


def _status_command(status: str, doc: str) -> click.Command:
    @click.option("--tenant", required=True)
    @click.argument("name")
    def command(tenant: str, name: str) -> None:
        r = store()
        _tenant(r, tenant)
        emit(_run(lambda: cmp.set_status(r, tenant, name, status)).as_dict())

    command.__doc__ = doc
    return command


campaign.command("pause")(_status_command("paused", "Pause a campaign until resumed."))
campaign.command("resume")(_status_command("running", "Resume a paused campaign."))
campaign.command("end")(_status_command("ended", "End a campaign for good (its report stays)."))


@campaign.command()
@click.option("--tenant", required=True)
@click.argument("name", required=False)
@click.option("--holdout", is_flag=True, help="The tenant-wide holdout's report instead.")
def report(tenant: str, name: str | None, holdout: bool) -> None:
    """A campaign's report (or --holdout's): groups, uplift with its interval, cost, ROI."""
    r = store()
    t = _tenant(r, tenant)
    if holdout:
        emit(holdout_report(r, tenant, t.holdout_share))
        return
    if not name:
        fail("give the campaign's NAME, or --holdout")
    emit(_run(lambda: campaign_report(r, tenant, cmp.get_campaign(r, tenant, name))))


@campaign.command()
@click.option("--tenant", required=True)
@click.argument("name")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The people to contact (CSV).",
)
@click.option(
    "--control-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The control group, held back (default: <out stem>.control.csv).",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    help="The best K of the audience by score, control group included.",
)
@click.option("--min-score", type=click.FloatRange(0, 1), help="Only scores at least this.")
@click.option(
    "--customers",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your extract with raw ids and contact columns (CSV or Parquet): rows then "
    "carry its ids instead of customer hashes.",
)
@click.option(
    "--id-column", default="customer_id", show_default=True, help="The id column of --customers."
)
@click.option(
    "--contact-column",
    "contact_columns",
    multiple=True,
    help="A column of --customers to copy (repeatable): email, address...",
)
@click.option(
    "--opt-out-column",
    help="Opted out when 1/true/yes/y (default: a CRM attribute or --customers column "
    "named opt_out, opted_out, email_opt_out or do_not_contact).",
)
def export(
    tenant: str,
    name: str,
    out: Path,
    control_out: Path | None,
    top: int | None,
    min_score: float | None,
    customers: Path | None,
    id_column: str,
    contact_columns: tuple[str, ...],
    opt_out_column: str | None,
) -> None:  # fmt: skip
    """Write a campaign's contact list: its audience among the live CRM customers, scored by
    the champion model, best first, without holders of the product or people who opted out;
    the control group held back in --control-out. Every listed person is assigned (a person
    served the campaign on the web keeps their group). Prints a summary as JSON."""
    if contact_columns and customers is None:
        fail("--contact-column copies columns of --customers: give that file too")
    control_out = control_out or out.with_name(f"{out.stem}.control.csv")
    if control_out.resolve() == out.resolve():
        fail("--control-out must differ from --out: the control group is not contacted")
    r = store()
    t = _tenant(r, tenant)
    options = ExportOptions(
        top=top, min_score=min_score, opt_out_column=opt_out_column, customers=customers,
        id_column=id_column, contact_columns=contact_columns,
    )  # fmt: skip
    listed = _run(lambda: export_contacts(r, load_settings(), t, name, options))
    for path, group in ((out, TREATED), (control_out, CONTROL)):
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            write_contacts(listed, listed.group(group), fh)
    emit({**listed.summary, "out": str(out), "control_out": str(control_out)})


@campaign.command()
@click.option("--tenant", required=True)
@click.argument("name")
@click.argument(
    "responses_file", metavar="RESPONSES",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)  # fmt: skip
def responses(tenant: str, name: str, responses_file: Path) -> None:
    """Import a channel's responses (CSV or Parquet: customer_id or customer_hash, optional
    responded_at and value): conversions of the people's groups within the attribution window,
    once per person. Prints a report; exit 3 when rows were rejected."""
    r = store()
    t = _tenant(r, tenant)
    report = _run(lambda: import_responses(r, t, name, responses_file))
    emit(report)
    exit_if_rows_rejected(report["rejected"])
