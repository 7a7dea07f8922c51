"""The admin dashboard: static pages at /dashboard/ that call the admin and staff JSON API.

Nothing here knows a key: the page asks for the admin key or the staff token, keeps it in the
tab's ``sessionStorage`` (gone when the tab closes; no cookie, so no cross-site request can
carry it) and sends it as ``Authorization: Bearer``. Every script, style and the charting
library (uPlot, vendored under static/vendor with its licence) is served from here, and the
Content-Security-Policy forbids loading anything from elsewhere or running inline script.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"

dashboard = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    static_folder=str(STATIC),
    static_url_path="/static",
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dashboard.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@dashboard.route("/")
def index() -> Response:
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response
