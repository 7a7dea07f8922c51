"""The Flask app factory."""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction

import orjson
from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from app import auth, cors
from app.api import blueprints
from app.api_docs import SERVERS, SNIPPET_OPERATION, SNIPPET_PATH
from app.dashboard import dashboard
from app.demo.views import demo_pages
from app.errors import OfferwiseApi, register_domain_errors, register_fallback
from app.fast_lane import FastLane
from app.observability import configure_logging, instrument
from app.pages import pages
from app.request_body import Request
from app.settings import load_settings
from clickstream.schemas import MAX_BODY_BYTES, MAX_JSON_DEPTH, EventSchema, parse_json
from store.config import Settings

# Bodies larger than this are refused with 413 before any parsing; endpoints that take uploads
# raise their own limit, the small JSON endpoints lower it.
DEFAULT_MAX_BODY = 16 * 1024
BODY_LIMITS = {
    "/v1/admin/catalog": 20 * 1024 * 1024,
    "/v1/admin/crm": 2 * 1024**3,
    "/v1/collect": MAX_BODY_BYTES,
}


class OrjsonProvider(DefaultJSONProvider):
    """orjson for response bodies (several times faster on the hot paths); the standard
    library for what orjson refuses, such as integers beyond 64 bits echoed back in errors.
    Reading (``request.get_json``) has the API's depth limit (clickstream.schemas.parse_json)."""

    def dumps(self, obj: object, **kwargs: object) -> str:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return super().dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: object) -> object:
        return parse_json(s)


class OfferwiseFlask(Flask):
    """Flask that asks once per function whether it is a coroutine.

    Flask and flask-smorest call ``ensure_sync`` for the view, each wrapper and each hook on
    every request, and ``inspect.iscoroutinefunction`` is slow; the answer never changes.
    Bound methods (MethodView builds a new instance per request) are keyed by their function.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._is_async: dict[object, bool] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        target = getattr(func, "__func__", func)
        is_async = self._is_async.get(target)
        if is_async is None:
            is_async = self._is_async[target] = iscoroutinefunction(target)
        return self.async_to_sync(func) if is_async else func


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    app = OfferwiseFlask(__name__)
    app.json = OrjsonProvider(app)
    app.request_class = Request
    app.config.update(
        OFFERWISE_SETTINGS=settings,
        API_TITLE="Offerwise",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/v1",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=max(BODY_LIMITS.values()),
        JSON_SORT_KEYS=False,
    )
    api = OfferwiseApi(
        app,
        spec_kwargs={
            "servers": SERVERS,
            "info": {
                "description": (
                    "Hosted web personalization. Site keys (public, origin-bound) collect events "
                    "and fetch offers; admin keys manage one tenant; the staff token manages "
                    "tenants. Every error and refusal is JSON with a message naming the field "
                    "and reason, or the limit. JSON bodies may nest arrays and objects at most "
                    f"{MAX_JSON_DEPTH} levels deep (400); admin and staff requests are "
                    "authenticated before their body is read (401)."
                )
            },
            "components": {
                "securitySchemes": {
                    "adminKey": {"type": "http", "scheme": "bearer"},
                    "staffToken": {"type": "http", "scheme": "bearer"},
                }
            },
        },
    )
    api.spec.components.schema("Event", schema=EventSchema)
    for blp in blueprints():
        api.register_blueprint(blp)
    app.register_blueprint(pages)
    app.register_blueprint(demo_pages)
    # The snippet is a page, not an API blueprint's view: its operation is documented here.
    api.spec.tag({"name": "snippet", "description": "The JavaScript snippet for shop pages"})
    snippet_rule = next(r for r in app.url_map.iter_rules() if r.rule == SNIPPET_PATH)
    api.spec.path(rule=snippet_rule, operations=SNIPPET_OPERATION)
    app.register_blueprint(dashboard)

    @app.before_request
    def _body_limit() -> None:
        request.max_content_length = BODY_LIMITS.get(request.path, DEFAULT_MAX_BODY)

    instrument(app)
    auth.install(app)
    cors.install(app)
    register_domain_errors(app)
    register_fallback(app)
    # The hot paths' everyday requests skip Flask's per-request machinery (see app.fast_lane).
    app.wsgi_app = FastLane(app)  # type: ignore[method-assign]
    return app
