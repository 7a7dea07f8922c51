"""The demo shop's pages (/demo/): served only while `offerwise demo` runs.

A plain shop: home, category and product pages, a cart. It embeds the snippet as any shop
would (a script tag and a data-offerwise-placement element); the shop keeps its cart in
the browser's sessionStorage, and no page sets a cookie.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response, abort, current_app, render_template, request

from app.demo.products import CATEGORIES, CATEGORY, PRODUCT, PRODUCTS, picture
from app.demo.setup import CAMPAIGN, keys_file, read_world
from models import registry
from store.config import Settings
from store.redis_client import get_redis

demo_pages = Blueprint("demo", __name__, url_prefix="/demo")


def _settings() -> Settings:
    return current_app.config["OFFERWISE_SETTINGS"]


@demo_pages.before_request
def _only_in_the_demo() -> None:
    if not _settings().demo or not keys_file(_settings()).exists():
        abort(404)


def _page(template: str, **context: object) -> str:
    settings = _settings()
    keys = orjson.loads(keys_file(settings).read_bytes())
    base = request.host_url.rstrip("/")
    champion = registry.champion(get_redis(settings), "demo")
    return render_template(
        template,
        site_key=keys["site_key"],
        base=base,
        categories=CATEGORIES,
        world=read_world(settings),
        campaign=CAMPAIGN["name"],
        champion=champion,
        **context,
    )


@demo_pages.route("/")
def home() -> str:
    return _page("demo/list.html", title="All gear", products=PRODUCTS, category=None)


@demo_pages.route("/c/<category>")
def category(category: str) -> str:
    found = CATEGORY.get(category) or abort(404)
    products = [p for p in PRODUCTS if p.category == category]
    return _page("demo/list.html", title=found.title, products=products, category=found)


@demo_pages.route("/p/<product_id>")
def product(product_id: str) -> str:
    found = PRODUCT.get(product_id) or abort(404)
    return _page(
        "demo/product.html",
        title=found.name,
        product=found,
        category=CATEGORY[found.category],
        exclude=found.id,
    )


@demo_pages.route("/cart")
def cart() -> str:
    return _page(
        "demo/cart.html",
        title="Your cart",
        names={p.id: p.name for p in PRODUCTS},
        prices={p.id: float(p.price) for p in PRODUCTS},
    )


@demo_pages.route("/img/<product_id>.svg")
def image(product_id: str) -> Response:
    found = PRODUCT.get(product_id) or abort(404)
    response = Response(picture(found), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
