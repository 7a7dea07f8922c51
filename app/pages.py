"""Browser-facing pages: the snippet and the API docs page (the demo shop: app/demo/views.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, current_app, render_template

pages = Blueprint("pages", __name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Built from js-snippet/src by `make snippet` (minified, size-checked); not kept in git.
SNIPPET = REPO_ROOT / "js-snippet" / "dist" / "offerwise.min.js"


class SnippetMissing(RuntimeError):
    """The built snippet is not there: the service would answer 404 to every shop page."""


@lru_cache(maxsize=1)
def _snippet() -> bytes:
    try:
        return SNIPPET.read_bytes()
    except FileNotFoundError:
        raise SnippetMissing(
            f"{SNIPPET} is missing: build it with `make snippet` "
            "(needs node and npm; `make test` and `make demo` build it too)"
        ) from None


# At start, when the app is created, rather than on a shop's first page view.
pages.record_once(lambda _state: _snippet())


@pages.route("/v1/snippet.js")
def snippet() -> Response:
    response = Response(_snippet(), mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@pages.route("/v1/docs")
def docs() -> str:
    spec = current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    operations = []
    for path, item in sorted(spec["paths"].items()):
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                operations.append({"method": method.upper(), "path": path, **op})
    return render_template("docs.html", spec=spec, operations=operations)


@pages.route("/")
def index() -> dict:
    return {
        "service": "offerwise",
        "docs": "/v1/docs",
        "openapi": "/v1/openapi.json",
        "health": "/healthz",
        "demo": "/demo/" if current_app.config["OFFERWISE_SETTINGS"].demo else None,
        "dashboard": "/dashboard/",
    }
