"""`offerwise demo` as `make demo` runs it, one first start shared by every test here (the
``demo`` fixture, tests/system/conftest.py: installing and training the demo is the slow part).

The demo shop in a real browser: the snippet sends beacons and shows offers that change, with
their reason, when the visitor gives a ZIP from another segment, browses a category or logs in as
a demo customer; an unknown ZIP is told; no cookie is ever set. The shop is the command's own
server (gunicorn, its own embedded Redis): the demo tenant its first start installed (CRM import,
seeded traffic, trained models, a campaign), on the real ZIP census table with the test suite's
small segmentation. These tests read its store, not the session's Redis.

The command: the banner comes once the server answers, with the shop, dashboard and API docs
URLs and the admin key; the first start installs the demo tenant, a second start on the same
data dir reuses all of it (last in this file: it stops the first start).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import orjson
import pytest
import redis

from campaigns import tokens
from campaigns.assignment import HOLDOUT, TREATED, draw
from store import keys
from store.config import Settings
from store.embedded import EmbeddedRedis
from store.tenants import get_tenant
from tests.browser import closing_contexts, require_chromium
from tests.system.conftest import Demo

REPO = Path(__file__).resolve().parents[2]

# The first test may wait for the demo's first start (install and training: minutes when the
# machine is busy), beyond the suite's 300 s.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.timeout(900),
]


@dataclass
class Shop:
    base: str
    r: redis.Redis
    world: dict
    settings: Settings


@pytest.fixture(scope="module")
def shop(demo: Demo, geo_dir) -> Shop:
    require_chromium()
    from app.demo.setup import read_world

    demo.running()
    assert "models    trained" in demo.first.banner(), demo.first.banner()
    settings = Settings(data_dir=demo.data_dir, geo_dir=geo_dir, demo=True)
    r = EmbeddedRedis(demo.data_dir / "redis").client()
    return Shop(demo.base, r, read_world(settings), settings)


_visitors = count()


def visitor_outside_holdout(shop: Shop) -> str:
    """A visitor id the tenant-wide holdout (5% served popularity only) does not draw, so the
    test sees what personalization does; the snippet takes it from localStorage."""
    tenant = get_tenant(shop.r, "demo")
    assert tenant is not None
    while True:
        visitor = f"browser-{time.time_ns()}-{next(_visitors)}"
        if draw(tenant.id_secret, HOLDOUT, f"v:{visitor}", tenant.holdout_share) == TREATED:
            return visitor


def new_page(b, shop: Shop, visitor: str | None = None):
    context = b.new_context()
    if visitor:
        context.add_init_script(f"localStorage.setItem('ow_vid', {orjson.dumps(visitor).decode()})")
    return context.new_page()


def offer_ids(page) -> list[str]:
    return page.eval_on_selector_all(
        "#offers .offerwise-offer", "els => els.map(e => e.dataset.productId)"
    )


def reasons(page) -> list[str]:
    return page.eval_on_selector_all(
        "#offers .offerwise-reason", "els => els.map(e => e.textContent)"
    )


def wait_for_change(page, before: list[str], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = offer_ids(page)
        if now and now != before:
            return now
        page.wait_for_timeout(200)
    return offer_ids(page)


def give_zip(page, code: str) -> str:
    """Type ``code`` into the snippet's ZIP prompt; what its status line then says."""
    status = page.locator(".offerwise-zip-status")
    before = status.text_content() if status.count() else ""
    page.fill(".offerwise-zip input", code)
    page.click(".offerwise-zip button")
    page.wait_for_function(
        "before => document.querySelector('.offerwise-zip-status').textContent !== before",
        arg=before,
        timeout=10_000,
    )
    return status.text_content() or ""


def _events(r, until: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = [orjson.loads(f[b"e"]) for _, f in r.xrange(keys.event_stream("demo"))]
        if len(events) >= until or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_demo_shop_sends_beacons_and_shows_offers(shop, chromium):
    r = shop.r
    seeded = r.xlen(keys.event_stream("demo"))
    with closing_contexts(chromium) as b:
        page = b.new_page()
        page.goto(f"{shop.base}/demo/")
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
        assert offers.first.get_attribute("href") == f"{shop.base}/demo/p/{first_offer}"
        offers.first.click()  # the offer link navigates away; its click beacon must still arrive
        page.wait_for_url(f"{shop.base}/demo/p/{first_offer}")  # and stays in the shop
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


def test_global_privacy_control_means_no_profile(shop, chromium):
    seeded = shop.r.xlen(keys.event_stream("demo"))
    with closing_contexts(chromium) as b:
        context = b.new_context()
        context.add_init_script(
            "Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})"
        )
        page = context.new_page()
        page.goto(f"{shop.base}/demo/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        page.click("button.view[data-id='p-tent-2p']")
        assert page.evaluate("localStorage.getItem('ow_vid')") is None
        time.sleep(1.0)
    # The snippet saw GPC and said so in its beacons: counted, but nothing per visitor kept.
    assert shop.r.xlen(keys.event_stream("demo")) == seeded


def test_a_zip_from_another_segment_changes_the_offers(shop, chromium):
    by_theme = {s["theme"]: s for s in shop.world["segments"]}
    first, second = by_theme["city"], by_theme["country"]  # dense urban, then remote rural
    assert first["id"] != second["id"]
    with closing_contexts(chromium) as b:
        page = new_page(b, shop, visitor_outside_holdout(shop))
        page.goto(f"{shop.base}/demo/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        anonymous = offer_ids(page)
        assert give_zip(page, first["example_zip"]) == f"Showing offers for {first['example_zip']}."
        here = wait_for_change(page, anonymous)
        assert here != anonymous
        assert "Popular with people like you nearby" in reasons(page)
        # The page lists a ZIP per segment; its button fills the snippet's ZIP prompt.
        page.click(f"button.try-zip[data-zip='{second['example_zip']}']")
        page.wait_for_function(
            f"() => document.querySelector('.offerwise-zip-status').textContent"
            f" === 'Showing offers for {second['example_zip']}.'",
            timeout=10_000,
        )
        there = wait_for_change(page, here)
        assert there != here, (first, second)
        assert all(reasons(page)), "every offer shows its reason"
        assert page.locator("#why li").count() == len(there)
        assert page.context.cookies() == []


def test_an_unknown_zip_is_told(shop, chromium):
    with closing_contexts(chromium) as b:
        page = new_page(b, shop)
        page.goto(f"{shop.base}/demo/")
        page.wait_for_selector(".offerwise-zip input", timeout=10_000)
        said = give_zip(page, "00000")  # five digits, but no such ZIP: the service says so
        assert said == "00000 is not a ZIP code we know; offers stay general", said
        assert page.get_attribute(".offerwise-zip input", "aria-invalid") == "true"
        assert give_zip(page, "1234") == "Please enter a 5-digit ZIP code."  # the snippet's own
        assert give_zip(page, "10001").startswith("Showing offers for 10001")
        assert page.get_attribute(".offerwise-zip input", "aria-invalid") == "false"
        assert page.context.cookies() == []


def test_browsing_a_category_changes_the_offers(shop, chromium):
    with closing_contexts(chromium) as b:
        page = new_page(b, shop, visitor_outside_holdout(shop))
        page.goto(f"{shop.base}/demo/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        before = offer_ids(page)
        # Into the climbing category, and from its page into three of its products.
        page.click("header nav a[href$='/demo/c/climbing']")
        for pid in ("p-rope", "p-harness", "p-helmet"):
            page.click(f".card h3 a[href$='/demo/p/{pid}']")
            page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
            page.go_back()
        page.click("#refresh")
        after = wait_for_change(page, before)
        # The models weigh the categories and products looked at: the offers move. (Whether
        # one of them is a climbing product, its reason then naming the interest, is the
        # models' call.)
        assert after != before
        assert len(reasons(page)) == len(after) and all(reasons(page))
        assert page.context.cookies() == []


def test_logging_in_as_a_demo_customer_changes_the_offers(shop, chromium):
    listed = shop.world["customers"]
    assert len(listed) >= 3
    treated = next(c for c in listed if c["campaign_group"] == "treated")
    with closing_contexts(chromium) as b:
        page = new_page(b, shop, visitor_outside_holdout(shop))
        page.goto(f"{shop.base}/demo/")
        page.wait_for_selector("#offers .offerwise-offer", timeout=10_000)
        anonymous = offer_ids(page)
        page.click(f"button.login[data-customer='{treated['customer_id']}']")
        assert page.text_content("#who") == f"Logged in as {treated['customer_id']}."
        page.wait_for_function(
            "() => document.querySelector('#why').textContent.includes('Welcome back')",
            timeout=10_000,
        )
        known = offer_ids(page)
        assert known != anonymous
        assert known[0] == "p-bottle"  # the campaign's offer, first, for its treated group
        assert not set(known) & set(treated["holdings"])  # nothing they hold already
        assert len(reasons(page)) == len(known) and all(reasons(page))  # each says why
        # Every page of the session, and still no cookie on any origin.
        page.goto(f"{shop.base}/demo/cart")
        page.goto(f"{shop.base}/demo/p/p-kayak")
        assert page.context.cookies() == []


# -- the command ----------------------------------------------------------------------------
def test_make_demo_passes_the_port():
    out = subprocess.run(
        ["make", "-n", "demo", "PORT=8123"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "offerwise demo --port 8123" in out


def test_banner_once_listening_and_a_second_start_reuses_the_demo(demo: Demo):
    first = demo.first
    shop = demo.base
    # Printed once the server answers: the shop was there at once (fetched on the banner).
    assert first.first_page is not None
    status, page = first.first_page
    assert status == 200, page[-2000:]
    assert b"Trailhead Outfitters" in page
    banner = first.banner()
    demo_keys = orjson.loads((demo.data_dir / "demo" / "keys.json").read_bytes())
    for line in (f"{shop}/demo/", f"{shop}/dashboard/", f"{shop}/v1/docs", demo_keys["admin_key"]):
        assert line in banner, banner
    assert "people    1200 CRM customers imported" in banner, banner
    assert "models    trained" in banner, banner
    assert "campaign  'Welcome back' running" in banner, banner

    demo.current.stop()
    started = time.monotonic()
    second = demo.start()
    assert second.up.wait(300), second.tail()
    took = time.monotonic() - started
    banner = second.banner()
    assert "people    reused" in banner and "models    reused" in banner, banner
    assert demo_keys["admin_key"] in banner  # the same keys: the shop's pages keep working
    with urllib.request.urlopen(f"{shop}/demo/", timeout=5) as res:
        assert res.status == 200
    print(f"second start: banner after {took:.1f} s")
