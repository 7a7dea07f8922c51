"""Browser-facing pages: the snippet, the API docs page, the demo shop."""

from __future__ import annotations

import csv
import os
from functools import lru_cache
from pathlib import Path

import orjson
from flask import Blueprint, Response, abort, current_app, render_template, request

pages = Blueprint("pages", __name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Built from js-snippet/src by `make snippet` (minified, size-checked); not kept in git.
SNIPPET = REPO_ROOT / "js-snippet" / "dist" / "offerwise.min.js"
DEMO_CATALOG = Path(__file__).resolve().parent / "demo" / "catalog.csv"


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


def demo_keys_file() -> Path:
    return current_app.config["OFFERWISE_SETTINGS"].data_dir / "demo" / "keys.json"


@pages.route("/demo/")
def demo_shop() -> str:
    """The demo shop, served only while `offerwise demo` runs (it sets OFFERWISE_DEMO=1)."""
    if os.environ.get("OFFERWISE_DEMO") != "1" or not demo_keys_file().exists():
        abort(404)
    keys = orjson.loads(demo_keys_file().read_bytes())
    with DEMO_CATALOG.open() as fh:
        products = list(csv.DictReader(fh))
    return render_template(
        "demo.html", site_key=keys["site_key"], products=products, base=request.host_url.rstrip("/")
    )


@pages.route("/")
def index() -> dict:
    return {
        "service": "offerwise",
        "docs": "/v1/docs",
        "openapi": "/v1/openapi.json",
        "health": "/healthz",
        "demo": "/demo/" if os.environ.get("OFFERWISE_DEMO") == "1" else None,
    }
