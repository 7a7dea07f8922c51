"""One JSON error shape for every failure, 4xx or 5xx, with no stack trace leaving the server.

``{"code": 422, "status": "Unprocessable Entity", "message": "...", "errors": {...}}``: the
message names the field and the reason; ``errors`` keeps the detail per location and field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis
from flask import Flask, jsonify, request
from flask_smorest import Api
from redis.exceptions import ClusterError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from app.jobs import JobNotFound
from campaigns.definitions import CampaignError, CampaignExists, UnknownCampaign
from campaigns.offers import StoreUnavailable
from clickstream.archive_files import ArchiveBusy
from clickstream.catalog import CatalogError
from enrichment.crm import CrmBusy, CrmError, CrmImportError, CrmNothingToRollBack
from models.erasure import ErasureError
from models.registry import NothingToRollBack, RegistryError, UnknownVersion
from store.ratelimit import Refused
from store.tenants import TenantError, TenantExists, UnknownTenant

log = logging.getLogger("offerwise.errors")

INTERNAL_ERROR = "internal error; it has been logged with this request's id"


def error_payload(status: int, message: str) -> dict:
    """The error shape for a status and message, as flask-smorest's ``abort`` writes it; for
    answers built outside a Flask request (app.fast_lane)."""
    return {"code": status, "status": HTTP_STATUS_CODES.get(status, "Unknown"), "message": message}


def _first_problem(errors: object, path: tuple[str, ...] = ()) -> str | None:
    if isinstance(errors, dict):
        for key, value in errors.items():
            # webargs nests by location ("json", "query"); the field is what users need.
            sub = (
                path if key in ("json", "query", "form", "headers", "files") else (*path, str(key))
            )
            found = _first_problem(value, sub)
            if found:
                return found
    elif isinstance(errors, list) and errors:
        if isinstance(errors[0], str):
            return f"{'.'.join(path) or 'body'}: {errors[0]}"
        return _first_problem(errors[0], path)
    return None


def too_large_message(limit: int | None) -> str:
    return f"body: larger than this endpoint's limit of {limit} bytes"


class OfferwiseApi(Api):
    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        payload, code, headers = super().handle_http_exception(error)
        if isinstance(error, RequestEntityTooLarge):
            # Content-Length over the limit, or a chunked body read past it (app.request_body).
            payload["message"] = too_large_message(request.max_content_length)
        elif "message" not in payload:
            payload["message"] = _first_problem(payload.get("errors")) or error.description
        return payload, code, headers


def register_fallback(app: Flask) -> None:
    """Anything unexpected becomes a logged 500 with the same JSON shape and no trace."""

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        if isinstance(err, HTTPException):
            raise err
        log.exception("unhandled error")
        return jsonify(error_payload(500, INTERNAL_ERROR)), 500


# -- domain errors: mapped to HTTP here once, for the Flask views and app.fast_lane alike ------


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    payload: dict
    headers: dict[str, str] = field(default_factory=dict)


# Most specific first: the first class an error is an instance of decides. The prefix names the
# area when the domain's message does not start with the field already.
# (class, status, message prefix, Retry-After seconds)
DOMAIN_ERRORS: tuple[tuple[type[Exception], int, str, int | None], ...] = (
    (UnknownCampaign, 404, "campaign: ", None),
    (CampaignExists, 409, "", None),
    (CampaignError, 422, "", None),
    (CrmBusy, 409, "crm: ", 5),
    (CrmNothingToRollBack, 409, "crm: ", None),
    (CrmImportError, 422, "crm: ", None),
    (CrmError, 422, "crm: ", None),
    (CatalogError, 422, "catalog: ", None),
    (UnknownTenant, 404, "", None),
    (TenantExists, 409, "", None),
    (TenantError, 422, "", None),
    (UnknownVersion, 404, "", None),
    (NothingToRollBack, 409, "", None),
    (RegistryError, 422, "", None),
    (ErasureError, 422, "", None),
    (ArchiveBusy, 409, "", 30),
    (JobNotFound, 404, "job: ", None),
)


def domain_error_answer(err: Exception) -> ErrorAnswer | None:
    """The HTTP answer for a domain error; None for anything else (a bug: the caller logs a
    500). ``Refused`` (rate limit, backlog) carries its own status and Retry-After."""
    if isinstance(
        err, redis.ConnectionError | redis.TimeoutError | ClusterError | StoreUnavailable
    ):
        # The store is away (restarting, failing over): a retry soon succeeds, and nothing
        # of this request was kept, so say so instead of a 500. (With OFFERWISE_REDIS_WAIT_
        # REPLICAS a batch may be on the master without its replicas' word: the resend is
        # then deduplicated, so the client's retry is still the right move.)
        message = "store unavailable: nothing was stored; retry after Retry-After seconds"
        return ErrorAnswer(503, error_payload(503, message), {"Retry-After": "1"})
    if isinstance(err, Refused):
        return ErrorAnswer(
            err.status,
            error_payload(err.status, err.reason),
            {"Retry-After": str(err.retry_after)},
        )
    for cls, status, prefix, retry_after in DOMAIN_ERRORS:
        if isinstance(err, cls):
            payload = error_payload(status, f"{prefix}{err}")
            report = getattr(err, "report", None)
            if report:
                payload["errors"] = {"report": report}
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return ErrorAnswer(status, payload, headers)
    return None


def register_domain_errors(app: Flask) -> None:
    """Views let domain errors rise; this turns each into its JSON answer."""

    def _answer(err: Exception):
        found = domain_error_answer(err)
        if found is None:  # not reached: registered only for the mapped classes
            raise err
        return jsonify(found.payload), found.status, found.headers

    for cls in (
        Refused,
        redis.ConnectionError,
        redis.TimeoutError,
        ClusterError,
        StoreUnavailable,
        *(entry[0] for entry in DOMAIN_ERRORS),
    ):
        app.register_error_handler(cls, _answer)
