"""Who is calling: site key (public, origin-bound), admin key (tenant secret), staff token."""

from __future__ import annotations

import hmac

from flask import Flask, g, request
from flask_smorest import abort

from app.services import Services, services
from store.tenants import Tenant

ADMIN_AREA = "/v1/admin/"
STAFF_AREA = "/v1/staff/"


class SiteKeyRefused(Exception):
    """A site-key request that may not proceed: status 401 or 403 and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def tenant_of_site_key(here: Services, key: str | None, origin: str | None) -> Tenant:
    """The tenant of a site key, checked against the request's Origin; raises SiteKeyRefused.
    ``key`` is the first of: the body's or query's ``site``, the X-Site-Key header."""
    if not key:
        raise SiteKeyRefused(
            401, "site: a site key is required (body 'site', ?site= or X-Site-Key)"
        )
    found = here.keys.resolve(here.redis, key)
    if found is None or found[0] != "site":
        raise SiteKeyRefused(401, "site: unknown site key")
    tenant = found[1]
    if not tenant.allows_origin(origin):
        raise SiteKeyRefused(403, f"origin {origin} is not allowed for this site key")
    return tenant


def site_tenant(site_key: str | None) -> Tenant:
    """The tenant of this request's site key (see tenant_of_site_key); aborts when refused."""
    key = site_key or request.args.get("site") or request.headers.get("X-Site-Key")
    try:
        tenant = tenant_of_site_key(services(), key, request.headers.get("Origin"))
    except SiteKeyRefused as refused:
        abort(refused.status, message=refused.message)
    g.tenant_name = tenant.name
    return tenant


def install(app: Flask) -> None:
    @app.before_request
    def _credentials_first() -> None:
        """The admin and staff areas check their credential before any view runs, so before
        webargs reads a body: a request without a valid key is a 401 whatever it sends (a deep
        body was parsed, and answered 500, before the view looked at the key)."""
        path = request.path
        if path.startswith(ADMIN_AREA):
            admin_tenant()
        elif path.startswith(STAFF_AREA):
            require_staff()


def admin_tenant() -> Tenant:
    """This request's tenant by its admin key; aborts 401 without one. Checked once per request
    (by the hook above), then remembered."""
    known = g.get("admin_tenant")
    if known is not None:
        return known
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
    g.admin_tenant = found[1]
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
    return tracking_allowed_by(request.headers.get("DNT"), request.headers.get("Sec-GPC"))


def tracking_allowed_by(dnt: str | None, gpc: str | None) -> bool:
    """The rule behind tracking_allowed, from the two header values."""
    return dnt != "1" and gpc != "1"
