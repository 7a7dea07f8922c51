"""The two site-key hot paths' everyday requests, answered in front of Flask.

Why: on the benchmark machine (bench/bench_http.py) Flask's machinery around a view (request
context, routing, hooks, flask-smorest's wrapper, werkzeug's Request and Response objects) cost
about 120 us of CPU of a collect or recommend request, more than the endpoint's own work
(validating and storing a batch, or ranking offers: about 65 us with its Redis round trip). The
lane cut both requests to under half their CPU in process and lifted them from about 40 % to
about 50 % of the framework floor's requests/s.

What it answers: ``POST /v1/collect`` and ``GET /v1/recommend`` requests that the fast
validation paths accept whole (a well-formed body or query, a known site key from an allowed
origin, at least one good event), including their rate-limit and backlog refusals. Every other
request goes to Flask untouched (a body read here is handed back): input errors, preflights,
``POST /v1/recommend``, chunked bodies, anything unusual. So each error answer has a single
implementation, and the lane shares everything else with the Flask views: validation
(clickstream.schemas, campaigns.schemas), site-key auth (app.auth), the endpoint cores
(app.api.collect.store_batch, app.api.recommend.offers_answer), CORS (app.cors), metrics,
request ids and access logs (app.observability) and the error shape (app.errors).
tests/app/test_fast_lane.py pins its answers to Flask's on generated requests.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson
from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from app.api.collect import ACCEPTED_TYPES, media_type, store_batch
from app.api.recommend import offers_answer
from app.auth import SiteKeyRefused, tenant_of_site_key, tracking_allowed_by
from app.cors import allowed_origin_headers
from app.errors import INTERNAL_ERROR, domain_error_answer, error_payload
from app.observability import observe_request, request_id
from app.services import Services, services_of
from campaigns.schemas import fast_recommend_args
from clickstream.schemas import (
    MAX_BODY_BYTES,
    JsonTooDeep,
    load_batch,
    load_events,
    parse_json,
)
from store.tenants import Tenant

log = logging.getLogger("offerwise.errors")

COLLECT = "/v1/collect"
RECOMMEND = "/v1/recommend"


@dataclass
class Answer:
    status: int
    body: dict
    headers: list[tuple[str, str]] = field(default_factory=list)
    tenant: str | None = None


class FastLane:
    """WSGI middleware: ``app.wsgi_app = FastLane(app)``; Flask's own ``wsgi_app`` stays
    reachable as ``flask_wsgi``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.flask_wsgi = app.wsgi_app
        self._routes: dict[tuple[str, str], Callable[[dict, Services], Answer | None]] = {
            ("POST", COLLECT): self._collect,
            ("GET", RECOMMEND): self._recommend,
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        handler = self._routes.get((method, path))
        if handler is None:
            return self.flask_wsgi(environ, start_response)
        t0 = time.perf_counter()
        try:
            answer = handler(environ, services_of(self.app))
        except Exception as err:
            known = domain_error_answer(err)  # e.g. the store away while resolving the key
            if known is None:
                log.exception("unhandled error")
                answer = Answer(500, error_payload(500, INTERNAL_ERROR), _vary(environ))
            else:
                headers = [*_vary(environ), *known.headers.items()]
                answer = Answer(known.status, known.payload, headers)
        if answer is None:
            return self.flask_wsgi(environ, start_response)
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        body = orjson.dumps(answer.body)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *answer.headers,
            ("X-Request-ID", rid),
        ]
        elapsed = time.perf_counter() - t0
        observe_request(path, method, path, answer.status, elapsed, rid, answer.tenant)
        start_response(f"{answer.status} {HTTP_STATUS_CODES[answer.status]}", headers)
        return [body]

    # -- the two routes: None hands the request to Flask ------------------------------------

    def _collect(self, environ: dict, here: Services) -> Answer | None:
        length = environ.get("CONTENT_LENGTH", "")
        if media_type(environ) not in ACCEPTED_TYPES or not length.isdigit():
            return None
        if int(length) > MAX_BODY_BYTES:
            return None
        try:
            body = environ["wsgi.input"].read(int(length))
        except OSError:  # the client went away mid-body: Flask finds it short and says 400
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            # Depth is checked by the validation below, on what is not plainly flat.
            batch = load_batch(parse_json(body, max_depth=None))
        except Exception:  # any parse or validation error: Flask words the answer
            return None
        key = batch.get("site")
        if not key:
            query = _query(environ)
            if query is None:
                return None
            key = query.get("site")
        tenant = _tenant(environ, here, key)
        if tenant is None:
            return None
        try:
            good, bad = load_events(batch["events"])
        except JsonTooDeep:
            return None
        if not good:
            return None
        track = _tracking(environ) and not batch["dnt"]
        return _answer(environ, tenant, lambda: store_batch(here, tenant, batch, good, bad, track))

    def _recommend(self, environ: dict, here: Services) -> Answer | None:
        query = _query(environ)
        args = None if query is None else fast_recommend_args(query)
        if args is None:
            return None
        tenant = _tenant(environ, here, args.get("site"))
        if tenant is None:
            return None
        track = _tracking(environ)
        return _answer(environ, tenant, lambda: offers_answer(here, tenant, args, track))


def _tenant(environ: dict, here: Services, key: str | None) -> Tenant | None:
    """The site key's tenant, or None when refused (Flask then words the refusal)."""
    key = key or environ.get("HTTP_X_SITE_KEY")
    try:
        return tenant_of_site_key(here, key, environ.get("HTTP_ORIGIN"))
    except SiteKeyRefused:
        return None


def _answer(environ: dict, tenant: Tenant, work: Callable[[], dict]) -> Answer:
    """The endpoint core's answer, or its refusal, with the tenant's CORS headers."""
    headers = allowed_origin_headers(environ.get("HTTP_ORIGIN"))
    try:
        return Answer(200, work(), headers, tenant.name)
    except Exception as err:
        known = domain_error_answer(err)
        if known is None:
            log.exception("unhandled error")
            return Answer(500, error_payload(500, INTERNAL_ERROR), headers, tenant.name)
        return Answer(known.status, known.payload, [*headers, *known.headers.items()], tenant.name)


def _query(environ: dict) -> dict[str, str] | None:
    """The query string as werkzeug's request.args parses it, or None when it holds a key
    twice or non-ASCII bytes: then Flask decides."""
    qs = environ.get("QUERY_STRING", "")
    if not qs:
        return {}
    if not qs.isascii():
        return None
    pairs = parse_qsl(qs, keep_blank_values=True, errors="werkzeug.url_quote")
    query = dict(pairs)
    return query if len(query) == len(pairs) else None


def _tracking(environ: dict) -> bool:
    return tracking_allowed_by(environ.get("HTTP_DNT"), environ.get("HTTP_SEC_GPC"))


def _vary(environ: dict) -> list[tuple[str, str]]:
    return [("Vary", "Origin")] if environ.get("HTTP_ORIGIN") else []
