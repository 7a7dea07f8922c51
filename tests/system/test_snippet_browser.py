"""The built snippet in headless Chromium, on a shop page served from another origin than the
API: what it sends arrives in the store, offer clicks carry verified tokens, events queued when
the page is left still arrive, no cookie is set, and GPC or a missing consent leave no profile."""

from __future__ import annotations

import html
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest

from campaigns import tokens
from campaigns.assignment import HOLDOUT
from clickstream import catalog
from store import keys
from store.tenants import create_tenant, get_tenant
from tests.browser import closing_contexts, require_chromium, serve_in_thread
from tests.helpers import free_port, wait_for

GPC = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"


@dataclass
class Shop:
    """A shop's pages on their own origin, embedding the snippet from the API's origin. The
    product pages push a product view before the snippet has loaded (the queue stub)."""

    api: str
    site_key: str
    script_attrs: dict[str, str] = field(default_factory=dict)

    def page(self, product: str | None) -> str:
        attrs = " ".join(f'{k}="{html.escape(v)}"' for k, v in self.script_attrs.items())
        pushed = (
            f'offerwise.push(["track", "product_view", {{product_id: "{product}"}}]);'
            if product
            else ""
        )
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{product or "Home"}</title></head><body>
<h1>{product or "Home"}</h1>
<div id="offers" data-offerwise-placement="sidebar" data-offerwise-count="3"
     data-offerwise-exclude="{product or ""}">Loading offers</div>
<script>window.offerwise = window.offerwise || []; {pushed}</script>
<script src="{self.api}/v1/snippet.js" data-site="{self.site_key}" {attrs} async></script>
</body></html>"""

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path not in ("/",) and not path.startswith("/p/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        product = path.removeprefix("/p/") if path.startswith("/p/") else None
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [self.page(product).encode()]


@dataclass
class Site:
    shop: Shop
    base: str  # the shop's origin
    api: str
    log: CollectLog


@pytest.fixture
def site(app, r) -> Iterator[Site]:
    require_chromium()
    shop_port = free_port()
    shop_base = f"http://127.0.0.1:{shop_port}"
    tenant = create_tenant(r, "acme", [shop_base], rate_limit=10_000)
    products = [
        {"product_id": f"p{i}", "name": f"Product {i}", "category": ["tents", "stoves"][i % 2],
         "price": 10.0 + i, "margin": 2.0, "url": f"{shop_base}/p/p{i}", "image_url": None,
         "active": True}
        for i in range(8)
    ]  # fmt: skip
    catalog.replace_catalog(r, "acme", products)
    log = CollectLog(app)
    with serve_in_thread(log) as api:
        shop = Shop(api, tenant["site_key"])
        with serve_in_thread(shop, shop_port) as base:
            assert base == shop_base != api
            yield Site(shop, base, api, log)


def stored(r, visitor: str | None = None) -> list[dict]:
    events = [orjson.loads(f[b"e"]) for _, f in r.xrange(keys.event_stream("acme"))]
    return [e for e in events if visitor is None or e["visitor"] == visitor]


@dataclass
class Collect:
    origin: str | None
    mode: str | None  # Sec-Fetch-Mode: no-cors for sendBeacon with text/plain, cors for fetch
    sent: dict
    status: int
    answer: dict


class CollectLog:
    """The API as the browser reaches it, keeping every collect request and its answer: the
    browser side cannot read a beacon's answer, and Playwright reports requests only while the
    test is inside one of its calls."""

    def __init__(self, app) -> None:
        self.app = app
        self.calls: list[Collect] = []

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        if environ["PATH_INFO"] != "/v1/collect" or environ["REQUEST_METHOD"] != "POST":
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def capture(line: str, headers: list, exc_info=None):
            status.append(line)
            return start_response(line, headers, exc_info)

        answer = b"".join(self.app(environ, capture))
        self.calls.append(
            Collect(
                environ.get("HTTP_ORIGIN"),
                environ.get("HTTP_SEC_FETCH_MODE"),
                orjson.loads(body),
                int(status[0][:3]),
                orjson.loads(answer),
            )
        )
        return [answer]

    def carrying(self, event_ids: set[str]) -> list[Collect]:
        return [c for c in self.calls if event_ids & {e["id"] for e in c.sent["events"]}]


def open_shop(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
    return page


def visitor_traces(r, visitors: set[str]) -> list[bytes]:
    """Every Redis key that names one of these visitors (profile parts, campaign records...),
    but for the ids of the events already stored, which collect keeps for anyone (48 h) so that
    a retried batch is not counted twice: for a page-only visitor id they link nothing."""
    dedupe = {keys.dedupe_ids("acme", v, 0).rpartition(":")[0].encode() for v in visitors}
    return [
        k
        for k in r.scan_iter(count=1000)
        if any(v.encode() in k for v in visitors) and k.rpartition(b":")[0] not in dedupe
    ]


def test_views_from_another_origin_reach_the_store_and_no_cookie_is_set(site, r, chromium):
    with closing_contexts(chromium) as b:
        context = b.new_context()
        page = open_shop(context, f"{site.base}/p/p3")
        visitor = page.evaluate("offerwise.visitor")
        assert page.evaluate("localStorage.getItem('ow_vid')") == visitor
        page.goto(f"{site.base}/")  # the product page's events leave by beacon
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        events = wait_for(
            lambda: (found := stored(r, visitor)) and len(found) >= 3 and found,
            "the views of both pages in the stream",
        )
        assert context.cookies() == []
        assert page.evaluate("document.cookie") == ""
    views = [(e["type"], e.get("product_id") or e.get("url")) for e in events]
    assert views == [
        ("product_view", "p3"),  # pushed before the snippet loaded
        ("page_view", f"{site.base}/p/p3"),
        ("page_view", f"{site.base}/"),
    ]
    assert {c.origin for c in site.log.calls} == {site.base}
    assert r.exists(keys.visitor_key("acme", visitor))  # with consent: a profile


def test_offer_click_is_counted_with_a_verified_token(site, r, chromium):
    with closing_contexts(chromium) as b:
        context = b.new_context()
        page = open_shop(context, f"{site.base}/")
        visitor = page.evaluate("offerwise.visitor")
        page.wait_for_timeout(1500)  # the offers are in view for more than a second
        offer = page.locator("#offers .offerwise-offer").first
        product = offer.get_attribute("data-product-id")
        offer.click()
        page.wait_for_url(f"{site.base}/p/{product}")
        click = wait_for(
            lambda: next((e for e in stored(r, visitor) if e["type"] == "offer_click"), None),
            "the offer click in the stream",
        )
        assert context.cookies() == []
    assert click["product_id"] == product and click["placement"] == "sidebar"
    assert "unverified" not in click
    assert tokens.verify(get_tenant(r, "acme"), click["token"], product).product_id == product
    (carrier,) = site.log.carrying({click["id"]})
    assert carrier.mode == "no-cors", "sent by sendBeacon: the link was leaving the page"
    assert "flagged" not in carrier.answer and carrier.answer["rejected"] == [], carrier.answer
    impressions = [e for e in stored(r, visitor) if e["type"] == "offer_impression"]
    assert product in {e["product_id"] for e in impressions}
    assert all(e.get("token") and "unverified" not in e for e in impressions)
    assert all("flagged" not in c.answer for c in site.log.carrying({e["id"] for e in impressions}))
    counters = {
        k.decode(): int(float(v))
        for k, v in r.hgetall(keys.campaign_counters("acme", HOLDOUT)).items()
    }
    assert sum(v for k, v in counters.items() if k.endswith(":clicks")) == 1, counters
    impressions_counted = sum(v for k, v in counters.items() if k.endswith(":impressions"))
    assert impressions_counted == len(impressions), counters


def test_events_queued_before_pagehide_arrive(site, r, chromium):
    with closing_contexts(chromium) as b:
        context = b.new_context()
        page = open_shop(context, f"{site.base}/")
        visitor = page.evaluate("offerwise.visitor")
        queued = page.evaluate(
            """[offerwise.track("search", {query: "tent"}),
                offerwise.track("add_to_cart", {product_id: "p2", quantity: 1}),
                offerwise.track("product_view", {product_id: "p5"})]"""
        )
        page.goto(f"{site.base}/p/p1")  # well within the snippet's one-second batching delay
        wait_for(
            lambda: set(queued) <= {e["id"] for e in stored(r, visitor)},
            "the queued events in the stream",
        )
        # And when the tab is closed rather than navigated.
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        last = page.evaluate("offerwise.track('add_to_cart', {product_id: 'p6'})")
        page.close()
        wait_for(lambda: last in {e["id"] for e in stored(r, visitor)}, "the closed tab's event")
        assert context.cookies() == []
    for ids in (set(queued), {last}):
        assert [c.mode for c in site.log.carrying(ids)] == ["no-cors"], "by sendBeacon, once"


def test_global_privacy_control_leaves_no_visitor_profile(site, r, chromium):
    with closing_contexts(chromium) as b:
        context = b.new_context()
        context.add_init_script(GPC)
        page = open_shop(context, f"{site.base}/p/p3")
        page.goto(f"{site.base}/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        assert page.evaluate("offerwise.consent(true)") is False  # the browser's signal wins
        assert page.evaluate("offerwise.identify('CRM-1')") is None
        page.evaluate("offerwise.track('add_to_cart', {product_id: 'p2'})")
        wait_for(lambda: len({c.sent["visitor"] for c in site.log.calls}) == 2, "both pages")
        wait_for(
            lambda: "add_to_cart" in {e["type"] for c in site.log.calls for e in c.sent["events"]},
            "the last event",
        )
        assert page.evaluate("localStorage.getItem('ow_vid')") is None
    visitors = {c.sent["visitor"] for c in site.log.calls}
    assert all(c.sent["dnt"] is True and c.answer["profile"] is False for c in site.log.calls)
    sent = [e["type"] for c in site.log.calls for e in c.sent["events"]]
    assert "product_view" in sent and "identify" not in sent
    assert visitor_traces(r, visitors) == []
    assert stored(r) == []


def test_without_consent_nothing_leaves_and_no_visitor_profile_exists(site, r, chromium):
    site.shop.script_attrs["data-consent"] = "required"
    with closing_contexts(chromium) as b:
        context = b.new_context()
        page = open_shop(context, f"{site.base}/p/p3")
        page.evaluate("offerwise.identify('CRM-1')")
        page.wait_for_timeout(1500)
        assert site.log.calls == [], "held while the visitor has not answered"
        page.evaluate("offerwise.consent(false)")
        wait_for(lambda: site.log.calls, "the anonymous batch")
        (call,) = site.log.calls
        assert call.sent["dnt"] is True and call.answer["profile"] is False
        sent = [e["type"] for e in call.sent["events"]]
        assert sent[:2] == ["product_view", "page_view"], sent
        assert set(sent[2:]) <= {"offer_impression"}, "the login never leaves"
        assert visitor_traces(r, {call.sent["visitor"]}) == []
        assert stored(r) == []

        # The same page with a yes, in a new session: the profile the refusal prevented.
        other = b.new_context()
        page = open_shop(other, f"{site.base}/p/p3")
        page.evaluate("offerwise.identify('CRM-1')")
        assert page.evaluate("offerwise.consent(true)") is True
        visitor = page.evaluate("offerwise.visitor")
        wait_for(lambda: r.exists(keys.visitor_key("acme", visitor)), "the visitor's profile")
        assert visitor_traces(r, {visitor}), "the check above finds a profile where one is"
        assert other.cookies() == [] and context.cookies() == []
    assert {"product_view", "page_view", "identify"} <= {e["type"] for e in stored(r, visitor)}
