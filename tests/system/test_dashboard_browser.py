"""The admin dashboard in headless Debian Chromium, on a seeded tenant: CRM, catalog, web
traffic with ZIPs, two model versions, a campaign with people in both groups.

A tenant admin and a member of staff log in (keys typed into the form, kept in sessionStorage)
and visit every page: each chart is drawn (a canvas with pixels other than its background),
nothing is written to the console, axe-core (vendored, WCAG 2 A and AA rules) finds no
violation, and a screenshot of each page is kept under var/test-artifacts/dashboard/. The
uploads show their validation report row by row; a campaign is created and paused, a model
version promoted, and after all that the browser holds no cookie.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis
from rq import SimpleWorker
from rq.job import Job

from app.jobs import job_queue
from models.pipeline import train_and_register
from models.synthetic import SyntheticConfig
from models.training import TrainParams
from store.tenants import rotate_keys
from tests.browser import closing_contexts, require_chromium, serve_in_thread
from tests.helpers import batch, event
from tests.synth_world import World, make_world

# The first test of the module also seeds the tenant (a synthetic world, two trainings,
# traffic): about two minutes on a busy 2-core machine, beyond the suite's 300 s when loaded.
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts" / "dashboard"
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
STAFF = "staff-token-for-the-dashboard"
FAST = TrainParams(max_rounds=40, early_stopping=8)

# Every canvas on the page has drawn something: pixels of more than one colour.
CANVASES_DRAWN = """() => [...document.querySelectorAll('canvas')].map((c) => {
  const g = c.getContext('2d');
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  for (let i = 0; i < d.length && seen.size < 3; i += 4 * 97) seen.add(d[i] + ',' + d[i+1] + ',' + d[i+2] + ',' + d[i+3]);
  return {w: c.width, h: c.height, colours: seen.size};
})"""


@dataclass
class Seeded:
    world: World
    base: str
    admin_key: str
    campaign_product: str


@pytest.fixture(scope="module")
def seeded(redis_server, shared_data, geo_dir, tmp_path_factory) -> Iterator[Seeded]:
    require_chromium()
    from app import create_app
    from store.redis_client import reset_clients

    world = make_world(
        redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("dash"),
        SyntheticConfig(customers=1200, products=4, dead_products=1, seed=5), tenant="shop",
    )  # fmt: skip
    train_and_register(world.r, world.settings, world.tenant, params=FAST)
    # A second version, trained with another seed: staff can promote it from the page.
    train_and_register(world.r, world.settings, world.tenant, params=replace(FAST, seed=1))
    keys = rotate_keys(world.r, world.tenant)
    reset_clients()
    settings = replace(world.settings, redis_url=world.url, staff_token=STAFF)
    app = create_app(settings)
    client = app.test_client()
    admin = {"Authorization": f"Bearer {keys['admin_key']}"}
    product = world.data.products[0]
    res = client.post(
        "/v1/admin/campaigns",
        json={"name": "Spring offer", "offer": {"product_id": product}, "control_share": 0.5,
              "cost_per_contact": 0.05, "value_per_conversion": 40.0},
        headers=admin,
    )  # fmt: skip
    assert res.status_code == 201, res.json
    # Web traffic of the last minutes: visitors who give a ZIP, browse, get offers, some buy.
    site = keys["site_key"]
    for i in range(120):
        visitor = f"web-{i}"
        zip_code = world.data.zips[(i * 7) % len(world.data.zips)]
        events = [event("zip", zip=zip_code), event("product_view", product_id=product)]
        if i % 4 == 0:  # a quarter log in
            events.append(event("identify", customer_id=world.data.customer_ids[i]))
        assert client.post("/v1/collect", json=batch(site, visitor, events)).status_code == 200
        offers = client.get(f"/v1/recommend?site={site}&visitor={visitor}&n=2").json["offers"]
        seen = [
            event("offer_impression", product_id=o["product_id"], token=o["token"]) for o in offers
        ]
        if i % 3 == 0:
            seen.append(event("purchase", product_id=product, value=40.0))
        assert client.post("/v1/collect", json=batch(site, visitor, seen)).status_code == 200
    with serve_in_thread(app) as base:
        yield Seeded(world, base, keys["admin_key"], product)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def _watch(page, problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)  # fmt: skip
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))


def _log_in(page, base: str, admin: str | None, staff: str | None) -> None:
    page.goto(f"{base}/dashboard/")
    page.wait_for_selector("form[aria-label='Log in']")
    # By keyboard: the admin key field has the focus, Tab moves to the staff token, Enter sends.
    page.keyboard.type(admin or "")
    page.keyboard.press("Tab")
    page.keyboard.type(staff or "")
    page.keyboard.press("Enter")
    page.wait_for_selector("nav a[aria-current='page']")


def _visit(page, base: str, route: str, ready: str) -> None:
    page.goto(f"{base}/dashboard/#/{route}")
    page.wait_for_selector(ready, timeout=20_000)
    page.wait_for_load_state("networkidle")


def _charts_drawn(page, at_least: int) -> list[dict]:
    drawn = page.evaluate(CANVASES_DRAWN)
    assert len(drawn) >= at_least, drawn
    for canvas in drawn:
        assert canvas["w"] > 0 and canvas["h"] > 0 and canvas["colours"] >= 2, drawn
    return drawn


def _axe(page, base: str, route: str, ready: str) -> list:
    """axe-core's WCAG 2 A/AA violations of one page (in a context that lets the test inject
    the vendored script past the page's Content-Security-Policy). The same tab: a new one
    has its own sessionStorage, so it starts logged out."""
    _visit(page, base, route, ready)
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations.map("
        "(v) => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.html)}))"
    )
    return result


PAGES = [  # route, a selector present once its data is shown, canvases expected
    ("overview", "figure canvas", 2),
    ("catalog", "table caption", 0),
    ("crm", "table caption", 0),
    ("segments", "figure canvas", 1),
    ("models", "figure canvas", 1),
    ("campaigns", "table caption", 0),
]


def test_every_page_renders_its_charts_without_a_console_error(
    seeded: Seeded, artifacts: Path, chromium
):
    problems: list[str] = []
    with closing_contexts(chromium) as b:
        context = b.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        _watch(page, problems)
        _log_in(page, seeded.base, seeded.admin_key, STAFF)
        assert page.evaluate("sessionStorage.getItem('offerwise.admin')") == seeded.admin_key
        for route, ready, canvases in PAGES:
            _visit(page, seeded.base, route, ready)
            _charts_drawn(page, canvases)
            page.screenshot(path=str(artifacts / f"{route}.png"), full_page=True)
        # The overview's figures are the seeded traffic's.
        _visit(page, seeded.base, "overview", "figure canvas")
        kpis = dict(
            zip(
                page.locator(".kpi .label").all_inner_texts(),
                page.locator(".kpi .value").all_inner_texts(),
                strict=True,
            )
        )
        assert int(kpis["Visitors today"].replace(",", "")) >= 110  # an estimate (HyperLogLog)
        assert int(kpis["Offers seen today"].replace(",", "")) >= 200
        assert 15 <= float(kpis["Identified share today"].rstrip("%")) <= 35
        assert page.locator("table tbody tr").count() >= 3  # top segments
        # A campaign report draws its uplift and ROI intervals.
        _visit(page, seeded.base, "campaigns", "table caption")
        page.get_by_role("button", name="Report").first.click()
        page.wait_for_selector("figcaption:has-text('Uplift in conversion rate')")
        _charts_drawn(page, 2)
        page.screenshot(path=str(artifacts / "campaign-report.png"), full_page=True)
        assert context.cookies() == []
        context.close()
    assert not problems, problems


def test_uploads_show_their_validation_report_row_by_row(
    seeded: Seeded, artifacts, tmp_path, chromium
):
    problems: list[str] = []
    catalog = tmp_path / "catalog.csv"
    rows = [f"{p['product_id']},{p['name']},{p['category']},{p['price']}" for p in seeded.world.data.catalog]  # fmt: skip
    catalog.write_text("product_id,name,category,price\n" + "\n".join(rows) + "\nbad,,x,-3\n")
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "customer_id,zip,age\n"
        + "".join(f"d{i},{seeded.world.data.zips[i]},{30 + i}\n" for i in range(30))
        + "d-bad,123456789012,x\n"
    )
    with closing_contexts(chromium) as b:
        context = b.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        _watch(page, problems)
        _log_in(page, seeded.base, seeded.admin_key, None)
        _visit(page, seeded.base, "catalog", "table caption")
        page.get_by_label("Catalog file").set_input_files(str(catalog))
        page.get_by_role("button", name="Check only").click()
        page.get_by_text("the catalog is unchanged").wait_for()
        page.get_by_role("button", name="Upload catalog").click()
        page.get_by_text(re.compile(r"^Version \d+ is live")).wait_for()
        report = page.locator("section[aria-label='Validation report']")
        report.wait_for()
        assert "rows rejected: 1" in report.inner_text()
        bad = report.locator("tbody tr").first.inner_text()
        assert str(len(rows) + 2) in bad  # the file's row number (the header is row 1)
        page.screenshot(path=str(artifacts / "catalog-upload.png"), full_page=True)

        _visit(page, seeded.base, "crm", "table caption")
        page.get_by_label("Customers file").set_input_files(str(customers))
        page.get_by_label("ZIP column (optional)").fill("zip")
        page.get_by_role("button", name="Import CRM extract").click()
        report = page.locator("section[aria-label='Validation report']")
        report.wait_for()
        assert "rows imported: 30" in report.inner_text()
        assert report.locator("tbody tr").count() >= 1
        page.screenshot(path=str(artifacts / "crm-upload.png"), full_page=True)
        # Back to the seeded extract (with holdings, which training needs).
        live = page.locator("caption", has_text="CRM versions").inner_text()
        page.get_by_role("button", name="Roll back to the previous version").click()
        page.wait_for_function(
            "(old) => [...document.querySelectorAll('caption')].some("
            "(c) => c.textContent.startsWith('CRM versions') && c.textContent !== old)",
            arg=live,
        )
        # A tenant admin reads the models (versions, figures, gains) but changes nothing.
        _visit(page, seeded.base, "models", "figure canvas")
        _charts_drawn(page, 1)
        # Each version says how it serves visitors without CRM data (and why, without a model).
        assert page.get_by_role("columnheader", name="Anonymous visitors").count() == 1
        said = page.get_by_role("cell", name=re.compile(r"^(own model|customer model: .+)$"))
        assert said.count() == 2, page.content()[-3000:]
        assert page.get_by_role("button", name="Promote").count() == 0
        assert page.get_by_role("button", name="Train a new version").count() == 0
        page.screenshot(path=str(artifacts / "models-admin.png"), full_page=True)
        context.close()
    assert not problems, problems


def test_campaigns_and_models_can_be_changed_from_the_page(
    seeded: Seeded, artifacts, monkeypatch, chromium
):
    problems: list[str] = []
    with closing_contexts(chromium) as b:
        context = b.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        _watch(page, problems)
        _log_in(page, seeded.base, seeded.admin_key, STAFF)
        _visit(page, seeded.base, "campaigns", "table caption")
        page.get_by_label("Name").fill("Browser made")
        page.get_by_label("Control share").fill("0.2")
        page.get_by_role("button", name="Create campaign").click()
        row = page.locator("tr", has_text="Browser made")
        row.wait_for()
        row.get_by_role("button", name="Pause").click()
        page.locator("tr", has_text="Browser made").locator(".badge.paused").wait_for()

        _visit(page, seeded.base, "models", "figure canvas")
        champion = (
            page.locator("tr", has=page.locator(".badge.champion")).locator("th").inner_text()
        )
        page.get_by_role("button", name="Promote").first.click()
        page.wait_for_function(
            "(old) => { const b = document.querySelector('tbody .badge.champion');"
            " return b && !b.closest('tr').textContent.includes(old); }",
            arg=champion,
        )
        page.get_by_role("button", name="Roll back the champion").click()
        page.wait_for_function(
            "(old) => { const b = document.querySelector('tbody .badge.champion');"
            " return b && b.closest('tr').textContent.includes(old); }",
            arg=champion,
        )
        # Training from the page: the job runs in a burst worker here; the page follows it.
        page.get_by_role("button", name="Train a new version").click()
        page.get_by_text("queued").first.wait_for()
        world = seeded.world
        monkeypatch.setenv("OFFERWISE_DATA_DIR", str(world.settings.data_dir))
        monkeypatch.setenv("OFFERWISE_GEO_DIR", str(world.settings.geo_dir))
        monkeypatch.setenv("REDIS_URL", world.url)
        queue_redis = redis.Redis.from_url(world.url)
        SimpleWorker([job_queue(queue_redis)], connection=queue_redis).work(burst=True)
        done = page.locator("p[role='status']", has_text=re.compile("finished|failed"))
        done.wait_for(timeout=30_000)
        message = done.inner_text()
        assert "version" in message and "failed" not in message
        job_id = message.split()[1]
        new_version = message.split("version ")[1].split(",")[0]
        # The page is drawn anew: the message stays, the new version is in the table.
        page.locator("p.ok[role='status']", has_text=job_id).wait_for()
        page.locator("tbody th", has_text=new_version).wait_for()
        meta = Job.fetch(job_id, connection=queue_redis).meta
        progress = meta["progress"]
        assert progress["stage"] == "done" and progress["done"] == progress["total"], meta
        page.screenshot(path=str(artifacts / "models-trained.png"), full_page=True)
        context.close()
    assert not problems, problems


def test_the_pages_pass_axe_and_can_be_used_by_keyboard(seeded: Seeded, chromium):
    with closing_contexts(chromium) as b:
        context = b.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        page = context.new_page()
        _log_in(page, seeded.base, seeded.admin_key, STAFF)
        # On a page load the first Tab reaches the skip link, which moves the focus to the
        # content and leaves the page where it is.
        page.reload()
        page.wait_for_selector("figure canvas")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        assert page.evaluate("location.hash") == "#/overview"
        found = {route: _axe(page, seeded.base, route, ready) for route, ready, _ in PAGES}
        found["login"] = _axe(page, seeded.base, "login", "form")
        # The check sees what it should: an input without a label is a violation.
        page.evaluate("document.querySelector('main').append(document.createElement('input'))")
        unlabelled = page.evaluate(
            "async () => (await axe.run(document, {runOnly: ['label']})).violations.length"
        )
        assert unlabelled == 1
        # A new tab has its own sessionStorage: it starts at the login form.
        other = context.new_page()
        other.goto(f"{seeded.base}/dashboard/#/overview")
        other.wait_for_selector("form[aria-label='Log in']")
        context.close()
    assert not any(found.values()), found


def test_staff_alone_sees_the_models_and_a_wrong_key_is_refused(seeded: Seeded, chromium):
    problems: list[str] = []
    with closing_contexts(chromium) as b:
        context = b.new_context()
        page = context.new_page()
        _watch(page, problems)
        _log_in(page, seeded.base, None, STAFF)
        assert page.locator("nav a").all_inner_texts() == ["Models"]
        page.wait_for_selector("figure canvas")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_selector("form[aria-label='Log in']")
        assert page.evaluate("sessionStorage.length") == 0
        page.get_by_label("Admin key").fill("ow_admin_wrong")
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("alert").wait_for()
        assert "unknown admin key" in page.get_by_role("alert").inner_text()
        context.close()
    # The refused login is the only console message: the browser reports the 401 itself.
    assert all("401" in p for p in problems), problems
