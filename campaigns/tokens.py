"""Offer tracking tokens: what was offered, to whom, why; signed so clicks can be trusted.

The token travels with the offer to the page and comes back in ``offer_impression`` and
``offer_click`` events, which lets reports attribute responses to a model version or campaign
without storing any per-offer state at serving time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from functools import lru_cache

import orjson

from store.tenants import Tenant


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=4096)
def _keyed(secret: bytes) -> hmac.HMAC:
    # Keying an HMAC costs two hash blocks; copying a keyed one is what every token then pays.
    key = hmac.new(secret, b"offer-token", hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _sign(tenant: Tenant, body: str) -> bytes:
    mac = _keyed(tenant.id_secret).copy()
    mac.update(body.encode())
    return mac.digest()[:12]


def issue(
    tenant: Tenant, visitor: str, product_id: str, rank: int, source: str, now: float | None = None
) -> str:
    body = _b64(orjson.dumps([product_id, visitor, rank, source, int(now or time.time())]))
    sig = _sign(tenant, body)
    return f"{body}.{_b64(sig)}"


def verify(tenant: Tenant, token: str) -> dict | None:
    """The token's content, or None when it was not issued for this tenant or was altered."""
    body, _, sig = token.partition(".")
    try:
        expected = _sign(tenant, body)
        if not hmac.compare_digest(expected, _unb64(sig)):
            return None
        product_id, visitor, rank, source, issued = orjson.loads(_unb64(body))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        return None
    return {
        "product_id": product_id,
        "visitor": visitor,
        "rank": rank,
        "source": source,
        "issued": issued,
    }
