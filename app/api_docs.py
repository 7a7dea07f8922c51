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
