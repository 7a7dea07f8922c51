"""Offer tracking tokens: what was offered, to whom, why; signed so responses can be trusted.

The token travels with the offer to the page and comes back in ``offer_impression`` and
``offer_click`` events. It carries what a report needs to attribute the response without any
per-offer state kept at serving time: the product, the visitor, the rank, the source (the model
version or popularity), the campaign and the person's group in it, the person's group in the
tenant-wide holdout, and the score's decile on the product's model.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import time
from dataclasses import dataclass
from functools import lru_cache

import orjson

from store.tenants import Tenant

# Long enough for a page left open over a weekend; responses later than the campaigns'
# attribution windows count for nothing anyway.
TOKEN_TTL_S = 8 * 24 * 3600


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


@dataclass(frozen=True)
class TokenClaims:
    product_id: str
    visitor: str
    rank: int
    source: str
    issued: int
    # Tells apart two answers to the same visitor in the same second (two placements loading
    # together): without it their tokens were identical and the second impression a "replay".
    nonce: str = ""
    campaign_id: str | None = None
    group: str | None = None
    holdout_group: str | None = None
    decile: int | None = None
    signature: str = ""  # identifies the token (replay checks), never a secret

    @property
    def model_version(self) -> str | None:
        return self.source.partition(":")[2] or None if self.source.startswith("model") else None


_counter = itertools.count()


def _nonce() -> str:
    # Unique per process and call, and cheap (no entropy needed: the signature protects it).
    return f"{os.getpid():x}.{next(_counter):x}"


def issue(
    tenant: Tenant,
    visitor: str,
    product_id: str,
    rank: int,
    source: str,
    now: float | None = None,
    *,
    campaign_id: str | None = None,
    group: str | None = None,
    holdout_group: str | None = None,
    decile: int | None = None,
) -> str:
    fields: list = [product_id, visitor, rank, source, int(now or time.time()), _nonce()]
    extra = [campaign_id, group, holdout_group, decile]
    while extra and extra[-1] is None:  # tokens without a campaign stay as short as before
        extra.pop()
    body = _b64(orjson.dumps(fields + extra))
    return f"{body}.{_b64(_sign(tenant, body))}"


class TokenRefused(ValueError):
    """Why an offer token cannot be trusted; the message is what the collect answer says."""


def verify(
    tenant: Tenant, token: str, product_id: str | None = None, now: float | None = None
) -> TokenClaims:
    """The token's claims, or TokenRefused when it was not issued by this tenant's service,
    was altered, names another product than the event, or has expired."""
    body, _, sig = token.partition(".")
    try:
        expected = _sign(tenant, body)
        if not hmac.compare_digest(expected, _unb64(sig)):
            raise TokenRefused("not issued for this site, or altered")
        values = orjson.loads(_unb64(body))
        claims = TokenClaims(*values, signature=sig)  # type: ignore[misc]
    except (ValueError, TypeError, orjson.JSONDecodeError, UnicodeEncodeError):
        raise TokenRefused("not issued for this site, or altered") from None
    if product_id is not None and claims.product_id != product_id:
        raise TokenRefused(f"issued for product {claims.product_id!r}, not this one")
    if (now or time.time()) - claims.issued > TOKEN_TTL_S:
        raise TokenRefused("expired")
    return claims
