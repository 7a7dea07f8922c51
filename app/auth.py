"""Who is calling: site key (public, origin-bound), admin key (tenant secret), staff token."""

from __future__ import annotations

import hmac

from flask import g, request
from flask_smorest import abort

from app.services import services
from store.tenants import Tenant


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def site_tenant(site_key: str | None) -> Tenant:
    """The tenant of a site key, checked against the request's Origin."""
    key = site_key or request.args.get("site") or request.headers.get("X-Site-Key")
    if not key:
        abort(401, message="site: a site key is required (body 'site', ?site= or X-Site-Key)")
    here = services()
    found = here.keys.resolve(here.redis, key)
    if found is None or found[0] != "site":
        abort(401, message="site: unknown site key")
    tenant = found[1]
    origin = request.headers.get("Origin")
    if not tenant.allows_origin(origin):
        abort(403, message=f"origin {origin} is not allowed for this site key")
    g.tenant_name = tenant.name
    return tenant


def admin_tenant() -> Tenant:
    token = _bearer()
    if not token:
        abort(
            401,
            message="Authorization: 'Bearer <admin key>' is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = services().keys.resolve(services().redis, token)
    if found is None or found[0] != "admin":
        abort(
            401, message="Authorization: unknown admin key", headers={"WWW-Authenticate": "Bearer"}
        )
    g.tenant_name = found[1].name
    return found[1]


def require_staff() -> None:
    expected = services().settings.staff_token
    if not expected:
        abort(503, message="staff API disabled: set OFFERWISE_STAFF_TOKEN on the server")
    token = _bearer()
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        abort(
            401,
            message="Authorization: a valid staff token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


def tracking_allowed() -> bool:
    """Do-Not-Track and Global Privacy Control: no profile for this visitor."""
    return request.headers.get("DNT") != "1" and request.headers.get("Sec-GPC") != "1"
