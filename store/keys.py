"""Redis key naming.

Every key that belongs to one tenant starts with the hash tag ``{t:<tenant>}`` so that all of a
tenant's keys live in one Redis Cluster slot: multi-key scripts and transactions on them stay legal
when the deployment moves from one Redis server to a cluster. Global keys (the tenant index and the
key-hash lookup) carry the ``offerwise:`` prefix and are touched only by admin paths and cached by
the hot paths.
"""

from __future__ import annotations

import re

TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")

# Global keys
TENANTS = "offerwise:tenants"  # set of tenant names
KEY_HASHES = "offerwise:keyhash"  # hash: sha256(key) -> "<kind>:<tenant>"
SERVER_SECRET = "offerwise:secret"  # random secret for signing offer tokens


def tenant_prefix(tenant: str) -> str:
    return f"{{t:{tenant}}}"


def tenant_key(tenant: str, *parts: str) -> str:
    """``{t:<tenant>}:part1:part2``; parts must not be user-controlled without validation."""
    return ":".join((tenant_prefix(tenant), *parts))


def tenant_config(tenant: str) -> str:
    return tenant_key(tenant, "config")


def event_stream(tenant: str) -> str:
    return tenant_key(tenant, "events")


def visitor_key(tenant: str, visitor: str, part: str = "profile") -> str:
    return tenant_key(tenant, "v", visitor, part)
