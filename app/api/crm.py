"""CRM extracts (admin key): streamed upload, versions, rollback, background jobs."""

from __future__ import annotations

import shutil
import uuid

from flask import request
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from app import api_schemas as bodies
from app.api_docs import BINARY_FILE, ok
from app.auth import admin_tenant
from app.jobs import crm_import_job, enqueue, job_status
from app.request_body import Blueprint
from app.services import services
from enrichment.crm import (
    ImportOptions,
    import_crm,
    rollback,
    versions_info,
)

blp = Blueprint("crm", __name__, url_prefix="/v1/admin", description="CRM extracts (admin key)")

MAX_UPLOAD_BYTES = 2 * 1024**3
CHUNK = 1 << 20


class CrmArgs(Schema):
    id_column = fields.String(load_default="customer_id", validate=validate.Length(min=1, max=128))
    zip_column = fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    types = fields.String(
        load_default=None,
        validate=validate.Length(max=4096),
        metadata={
            "description": "Type overrides: col=type,col=type (numeric, categorical, date, boolean)."
        },
    )
    derive = fields.List(
        fields.String(validate=validate.Length(max=256)),
        load_default=list,
        validate=validate.Length(max=50),
        metadata={"description": "Derived features, e.g. income_per_age=income/age (repeatable)."},
    )
    background = fields.Boolean(
        load_default=False,
        metadata={"description": "Queue the import for the worker and return 202 with a job id."},
    )


def _options(args: dict) -> dict:
    types = {}
    for pair in filter(None, (args["types"] or "").split(",")):
        name, sep, kind = pair.partition("=")
        if not sep or not name.strip() or not kind.strip():
            abort(422, message=f"types: {pair!r} must look like column=type")
        types[name.strip()] = kind.strip()
    return {
        "id_column": args["id_column"],
        "zip_column": args["zip_column"],
        "types": types,
        "derive": list(args["derive"]),
    }


def _spool(tenant: str) -> tuple:
    """Stream the upload to the data dir without holding it in memory."""
    folder = services().settings.crm_dir / tenant / "uploads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    if request.mimetype == "multipart/form-data":
        files = request.files
        if "customers" not in files:
            shutil.rmtree(folder)
            abort(
                422,
                message="customers: a multipart part named 'customers' is required (and optionally 'holdings')",
            )
        for name in ("customers", "holdings"):
            if name in files:
                files[name].save(folder / name)
    else:
        with open(folder / "customers", "wb") as out:
            while chunk := request.stream.read(CHUNK):
                out.write(chunk)
    return folder


@blp.route("/crm", methods=["POST"])
@blp.doc(
    summary="Import a CRM extract (new version, live when complete)",
    description=(
        "Body: the customers file itself (CSV or Parquet, detected from the content), or "
        "multipart/form-data with parts `customers` and optional `holdings` "
        "(customer_id,product_id[,quantity][,date]). At most 2 GiB. Bad rows are reported "
        "(row, column, reason) and the rest imported; the new version goes live atomically "
        "and the previous one is kept for rollback; re-importing the same file changes nothing. "
        "With `background=true` the import runs in the worker: 202 and a job id."
    ),
    requestBody={
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/octet-stream": BINARY_FILE,
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "customers": {"type": "string", "format": "binary"},
                        "holdings": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    },
)
@blp.arguments(CrmArgs, location="query", as_kwargs=False)
@blp.alt_response(
    202, schema=bodies.JobQueuedSchema, description="Queued: poll /v1/admin/jobs/{id}"
)
@blp.alt_response(422, description="The file cannot be imported; the previous version stays live")
@blp.doc(responses=ok(bodies.CrmImportSchema, "Imported: the report, bad rows listed"))
def upload(args: dict):
    tenant = admin_tenant()
    options = _options(args)
    folder = _spool(tenant.name)
    if args["background"]:
        job_id = enqueue(
            services().queue_redis,
            crm_import_job,
            tenant.name,
            str(folder),
            options,
            meta={"tenant": tenant.name},
        )
        return {"job": job_id, "status": "queued"}, 202
    try:
        holdings = folder / "holdings"
        return import_crm(
            services().redis,
            tenant.name,
            folder / "customers",
            holdings if holdings.exists() else None,
            options=ImportOptions(**options),
            settings=services().settings,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@blp.route("/crm/versions")
@blp.doc(summary="Kept CRM versions, newest first, and which is live")
@blp.doc(responses=ok(bodies.CrmVersionsSchema))
def versions():
    tenant = admin_tenant()
    return versions_info(services().redis, tenant.name, services().settings)


@blp.route("/crm/rollback", methods=["POST"])
@blp.doc(summary="Make the previous CRM version live again")
@blp.doc(responses=ok(bodies.CrmSwitchSchema))
def do_rollback():
    tenant = admin_tenant()
    return rollback(services().redis, tenant.name, services().settings)


@blp.route("/jobs/<string:job_id>")
@blp.doc(summary="Status of a background job of this tenant")
@blp.doc(responses=ok(bodies.JobSchema))
def job(job_id: str):
    tenant = admin_tenant()
    return job_status(services().queue_redis, job_id, tenant.name)
