"""The snippet in a real browser: the demo shop sends beacons, renders offers, sets no cookie."""

from __future__ import annotations

import time

import orjson
import pytest

from campaigns import tokens
from store import keys
from store.tenants import get_tenant
from tests.browser import browser, require_chromium, serve_in_thread
from tests.helpers import free_port


@pytest.fixture
def demo_site(app, monkeypatch):
    require_chromium()
    from app.cli.demo import prepare_demo

    port = free_port()
    monkeypatch.setenv("OFFERWISE_DEMO", "1")
    prepare_demo(port, seed_visitors=60)
    with serve_in_thread(app, port) as base:
        yield base


def _events(r, until: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = [orjson.loads(f[b"e"]) for _, f in r.xrange(keys.event_stream("demo"))]
        if len(events) >= until or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_demo_shop_sends_beacons_and_shows_offers(demo_site, r):
    seeded = r.xlen(keys.event_stream("demo"))
    with browser() as b:
        page = b.new_page()
        page.goto(f"{demo_site}/demo/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        offers = page.locator("#offers .offerwise-offer")
        assert offers.count() == 4
        visitor = page.evaluate("window.offerwise.visitor")
        assert (
            page.evaluate("localStorage.getItem('ow_vid')") == visitor
        )  # no cookie: local storage
        page.click("button.view[data-id='p-tent-2p']")
        page.click("button.cart[data-id='p-stove']")
        page.wait_for_timeout(1500)  # an impression counts once an offer was in view for 1 s
        first_offer = offers.first.get_attribute("data-product-id")
        offers.first.click()  # the offer link navigates away; its click beacon must still arrive
        events = [e for e in _events(r, seeded + 6) if e["visitor"] == visitor]
        types = [e["type"] for e in events]
        assert {
            "page_view",
            "product_view",
            "add_to_cart",
            "offer_impression",
            "offer_click",
        } <= set(types), types
        click = next(e for e in events if e["type"] == "offer_click")
        assert click["product_id"] == first_offer
        claims = tokens.verify(get_tenant(r, "demo"), click["token"], first_offer)
        assert claims.product_id == first_offer
        assert page.context.cookies() == []


def test_global_privacy_control_means_no_profile(demo_site, r):
    seeded = r.xlen(keys.event_stream("demo"))
    with browser() as b:
        context = b.new_context()
        context.add_init_script(
            "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
        )
        page = context.new_page()
        page.goto(f"{demo_site}/demo/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        page.click("button.view[data-id='p-tent-2p']")
        assert page.evaluate("localStorage.getItem('ow_vid')") is None
        time.sleep(1.0)
    # The snippet saw GPC and said so in its beacons: counted, but nothing per visitor kept.
    assert r.xlen(keys.event_stream("demo")) == seeded
