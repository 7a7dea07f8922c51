"""OpenAPI response documentation for the hot endpoints without per-request wrappers.

Each flask-smorest ``alt_response``/``response`` decorator adds a wrapper that runs on every
request (an app-context lookup and a coroutine check each); on /v1/collect and /v1/recommend
those cost more than parsing the request. ``blp.doc(responses=...)`` puts the same entries
into the document with no runtime cost.
"""

from __future__ import annotations

from marshmallow import Schema

# What every site-key endpoint can answer before doing its own work.
SITE_KEY_ERRORS: dict[int, str] = {
    401: "Missing or unknown site key",
    403: "Origin not allowed for this site key",
    429: "Rate limit exceeded (Retry-After says when to retry)",
}


def responses(table: dict[int, str | tuple[type[Schema] | Schema, str]]) -> dict:
    """``{200: (Schema, "description"), 401: "description"}`` -> OpenAPI ``responses``."""
    out: dict[str, dict] = {}
    for code, entry in table.items():
        if isinstance(entry, tuple):
            schema, description = entry
            out[str(code)] = {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            }
        else:
            out[str(code)] = {"description": entry}
    return out


def ok(schema: type[Schema] | Schema, description: str = "OK", status: int = 200) -> dict:
    """The success answer of an operation, documented without a per-request wrapper."""
    return responses({status: (schema, description)})


# The snippet is served by app.pages (a plain Flask route, not an API blueprint), so its
# operation is added to the document by hand.
SNIPPET_PATH = "/v1/snippet.js"
SNIPPET_OPERATION = {
    "get": {
        "tags": ["snippet"],
        "summary": "The embeddable JavaScript snippet (minified, at most 6 KB gzipped)",
        "description": (
            'Load it with <script src=".../v1/snippet.js" data-site="SITE_KEY" async>; it '
            "collects events, asks for offers and renders them into data-offerwise-placement "
            "elements. Cached for 5 minutes by browsers and proxies."
        ),
        "responses": {
            "200": {
                "description": "The snippet",
                "content": {"application/javascript": {"schema": {"type": "string"}}},
            }
        },
    }
}
# Relative: the document describes the service that serves it, wherever it is deployed.
SERVERS = [{"url": "/", "description": "The service that serves this document"}]

# A file sent as the body as it is (CSV, JSON or Parquet, told apart by its content): the
# media type generated clients use for a file upload.
BINARY_FILE = {"schema": {"type": "string", "format": "binary"}}
