"""Contact lists of campaigns for offline channels (admin key): export the people to contact,
import the channel's responses; both feed the campaign's report."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from flask import Response, request
from marshmallow import Schema, ValidationError, fields, validate

from app import api_schemas as bodies
from app.api_docs import BINARY_FILE, ok
from app.auth import admin_tenant
from app.request_body import Blueprint
from app.services import services
from campaigns.assignment import TREATED
from campaigns.contact_files import ContactListError, write_contacts
from campaigns.contacts import ExportOptions, export_contacts
from campaigns.responses import import_responses

blp = Blueprint(
    "campaign_lists",
    __name__,
    url_prefix="/v1/admin",
    description="Campaign contact lists for offline channels: export and responses",
)


class ExportArgs(Schema):
    top = fields.Integer(
        validate=validate.Range(min=1, max=10_000_000),
        metadata={"description": "The best K of the audience by score, control included."},
    )
    min_score = fields.Float(
        validate=validate.Range(min=0, max=1),
        allow_nan=False,
        metadata={"description": "Only people scored at least this."},
    )
    opt_out_column = fields.String(
        validate=validate.Length(min=1, max=128),
        metadata={
            "description": "The CRM attribute of opted-out people (1/true/yes/y); default: "
            "opt_out, opted_out, email_opt_out or do_not_contact when present."
        },
    )
    include_control = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Also return the control group's rows (group=control: held back, "
            "not to be contacted); default: the people to contact only."
        },
    )


EXPORT_ARGS = ExportArgs()
RESPONSES_MAX_BYTES = 64 * 1024 * 1024
CHUNK = 1 << 20


def _query(schema: Schema) -> dict:
    # Parsed after the key check, like bodies.
    try:
        return schema.load(request.args)
    except ValidationError as err:
        field, messages = next(iter(err.normalized_messages().items()))
        raise ContactListError(
            f"{field}: {messages[0] if isinstance(messages, list) else messages}"
        ) from None


@blp.route("/campaigns/<string:name>/export", methods=["POST"])
@blp.doc(
    summary="Export a campaign's contact list (CSV) for an offline channel",
    description=(
        "The campaign's audience among the live CRM customers, scored by the champion model, "
        "best first, without holders of the offered product, people who opted out and the "
        "tenant-wide holdout. Every listed person is assigned to the campaign (a person served "
        "it on the web keeps their group) and counted in the report: a POST, since each export "
        "records. Columns: customer_hash, score, decile, group, campaign. The control group is "
        "held back: its rows are returned only with include_control. A trigger audience "
        "cannot be exported."
    ),
    parameters=[{"in": "query", "schema": ExportArgs}],
    responses={
        "200": {"description": "The list", "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
def export(name: str):
    tenant = admin_tenant()
    args = _query(EXPORT_ARGS)
    here = services()
    options = ExportOptions(
        top=args.get("top"), min_score=args.get("min_score"),
        opt_out_column=args.get("opt_out_column"),
    )  # fmt: skip
    listed = export_contacts(here.redis, here.settings, tenant, name, options)
    rows = listed.contacts if args["include_control"] else listed.group(TREATED)
    out = io.StringIO()
    write_contacts(listed, rows, out)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="contacts.csv"',
            "X-Offerwise-Treated": str(listed.summary["treated"]),
            "X-Offerwise-Control": str(listed.summary["control"]),
        },
    )


@blp.route("/campaigns/<string:name>/responses", methods=["POST"])
@blp.doc(
    summary="Import an offline channel's responses: conversions for the campaign's report",
    description=(
        "Body: a CSV (or Parquet) file with customer_id (raw, hashed here as the CRM import "
        "hashes it) or customer_hash, and optional responded_at (ISO 8601, a date, or epoch "
        "seconds; default now) and value (default the campaign's value per conversion); at "
        "most 64 MiB. A row counts once per person, for a person assigned to the campaign and "
        "within the attribution window from their assignment; the others are reported (row, "
        "reason). Importing the same file again changes nothing."
    ),
    requestBody={
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/octet-stream": BINARY_FILE,
        },
    },
)
@blp.doc(responses=ok(bodies.ResponsesReportSchema))
def responses(name: str):
    tenant = admin_tenant()
    # Raised from the small default only now, after the key check.
    request.max_content_length = RESPONSES_MAX_BYTES
    with tempfile.TemporaryDirectory(prefix="offerwise-responses-") as folder:
        path = Path(folder) / "responses"
        with open(path, "wb") as fh:
            while chunk := request.stream.read(CHUNK):
                fh.write(chunk)
        return import_responses(services().redis, tenant, name, path)
