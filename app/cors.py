"""CORS per tenant for the two site-key endpoints.

A browser request is answered with ``Access-Control-Allow-Origin`` only when its Origin is in
the tenant's allowed list (a disallowed origin is refused with 403 before this point). Beacons
are sent as ``text/plain`` so they need no preflight; a preflight must name the site key in the
query string so the origin can be checked.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from app.services import services

SITE_PATHS = ("/v1/collect", "/v1/recommend")
MAX_AGE_S = "600"
# The snippet backs off as a 429/503 says; a cross-origin script reads only exposed headers.
EXPOSED = ("Access-Control-Expose-Headers", "Retry-After")


def allowed_origin_headers(origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a site-key request from an origin its tenant allows,
    for answers built outside Flask (app.fast_lane); the hook below gives Flask's the same."""
    if not origin:
        return []
    return [("Vary", "Origin"), ("Access-Control-Allow-Origin", origin), EXPOSED]


def install(app: Flask) -> None:
    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if not origin or request.path not in SITE_PATHS:
            return response
        response.vary.add("Origin")
        if request.method == "OPTIONS":
            site = request.args.get("site")
            found = services().keys.resolve(services().redis, site) if site else None
            if found is None or found[0] != "site" or not found[1].allows_origin(origin):
                return response
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, X-Site-Key"
            response.headers["Access-Control-Max-Age"] = MAX_AGE_S
        elif not g.get("tenant_name"):
            return response
        else:
            response.headers[EXPOSED[0]] = EXPOSED[1]
        response.headers["Access-Control-Allow-Origin"] = origin
        return response
