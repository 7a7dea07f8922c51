"""One JSON error shape for every failure, 4xx or 5xx, with no stack trace leaving the server.

``{"code": 422, "status": "Unprocessable Entity", "message": "...", "errors": {...}}``: the
message names the field and the reason; ``errors`` keeps the detail per location and field.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

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


class OfferwiseApi(Api):
    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
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
