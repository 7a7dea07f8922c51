"""Installs the demo tenant through the product's own doors, once; later starts reuse it.

Every start: the tenant and its keys, the catalog (its links carry this start's address).
First start only, each step skipped when its result is there already:
- the CRM extract (``app.demo.world``) through the real CRM import;
- the seeded traffic through the ingest path (ZIP enrichment included) and the archiver;
- the models, through the training pipeline and registry (small: the shop is small);
- a running campaign with its control group, through the campaign definitions.
What the shop page shows about them (segments to try, customers to log in as) is kept in
``<data dir>/demo/world.json``.
"""

from __future__ import annotations

import csv
import hashlib
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson
import redis

from app.demo.products import catalog_rows
from app.demo.world import DemoWorld, generate, showcase
from app.enrich import zip_block
from campaigns import definitions as cmp
from campaigns import rules
from campaigns.assignment import CONTROL, HOLDOUT, draw, person_of
from clickstream import catalog
from clickstream.archiver import Archiver
from clickstream.ingest import Ingestor
from enrichment.crm import ImportOptions, current_version, import_crm
from enrichment.demographics import demographics
from enrichment.segments import list_segments, segmentation
from models import registry
from models.pipeline import train_and_register
from models.training import TrainingError, TrainParams
from store import keys as keys_module
from store.artifacts import events_store
from store.config import Settings
from store.tenants import create_tenant, get_tenant, rotate_keys, update_tenant

TENANT = "demo"
DEMO_SECRET = hashlib.sha256(b"offerwise-demo").hexdigest()
CAMPAIGN = {
    "name": "Welcome back",
    "offer": {"product_id": "p-bottle"},
    "audience": {"visitors": "identified"},
    "control_share": 0.2,
    "cost_per_contact": 0.05,
    "value_per_conversion": 13.0,
    "priority": 5,
    "planned_people": 1000,
}
# Small and quick: 30 products on 1,200 customers train in about 7 s of CPU. One thread: the
# demo trains while its server starts on the same cores, and with libgomp's spinning default
# (before store/openmp.py) two threads took 4 times as long as one on the 2-core machine.
# cv_max_positives=0: one validation split. Cross-validated selection (for real extracts with
# few buyers) took the first start from about a minute to about three on 2 cores.
TRAIN = TrainParams(
    max_rounds=60, max_depth=4, early_stopping=10, min_positives=10,
    min_validation_positives=3, baselines=("popularity",), nthread=1, cv_max_positives=0,
)  # fmt: skip


@dataclass
class Demo:
    keys: dict
    steps: dict[str, str]  # what this start did, step by step (done / reused / skipped: why)


def demo_dir(settings: Settings) -> Path:
    return settings.data_dir / "demo"


def keys_file(settings: Settings) -> Path:
    return demo_dir(settings) / "keys.json"


def world_file(settings: Settings) -> Path:
    return demo_dir(settings) / "world.json"


def _keys(r: redis.Redis, settings: Settings, origins: list[str]) -> dict:
    path = keys_file(settings)
    if get_tenant(r, TENANT) is None:
        keys = create_tenant(r, TENANT, origins, rate_limit=1000)
        # Customer hashes decide the models' train/validation/holdout split: a secret of its
        # own would make every install's models, and so what the shop shows, a little
        # different. The demo's people are made up: a secret known to all exposes no one.
        r.hset(keys_module.tenant_config(TENANT), "id_secret", DEMO_SECRET)
    elif path.exists():
        keys = orjson.loads(path.read_bytes())
        update_tenant(r, TENANT, origins=origins)
    else:
        keys = rotate_keys(r, TENANT)
        update_tenant(r, TENANT, origins=origins)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(keys))
    path.chmod(0o600)
    return keys


def prepare_demo(
    r: redis.Redis,
    settings: Settings,
    base_url: str,
    *,
    customers: int = 1200,
    visitors: int = 1000,
) -> Demo:
    """Idempotent; ``base_url`` is where the shop is served (its origin and offer links)."""
    started = time.perf_counter()
    steps: dict[str, str] = {}

    def step(name: str, what: str) -> None:
        steps[name] = f"{what} ({time.perf_counter() - started:.1f} s)"

    origin = base_url.rstrip("/")
    origins = sorted({origin, origin.replace("127.0.0.1", "localhost")})
    keys = _keys(r, settings, origins)
    report = catalog.parse_upload(orjson.dumps(catalog_rows(origin)), "application/json")
    catalog.replace_catalog(r, TENANT, report.products)
    if not r.exists(rules.rules_key(TENANT)):
        # Rank by the models' propensity alone: with the default (expected margin), the
        # kayak's margin would put it first for nearly everyone, and the shop would show
        # less of what it knows about each visitor. The admin may change it (rules API).
        rules.save_rules(r, TENANT, {"weight": "none"})
    step("catalog", f"{len(report.products)} products")
    world = None
    if current_version(r, TENANT) is None or not world_file(settings).exists():
        seg, table = segmentation(settings), demographics(settings)
        if seg is None or table is None:
            step("people", "skipped: no ZIP census table or segments (see README, Data)")
            return Demo(keys, steps)
        world = generate(seg, table, customers=customers, visitors=visitors, now=time.time())
        _install(r, settings, world)
        step("people", f"{customers} CRM customers imported, {len(world.sessions)} visits seeded")
    else:
        step("people", "reused")
    if registry.champion(r, TENANT) is None:
        try:
            trained = train_and_register(r, settings, TENANT, params=TRAIN)
            step("models", f"trained {trained['version']}")
        except TrainingError as err:
            step("models", f"skipped: {err}")
    else:
        step("models", f"reused {registry.champion(r, TENANT)}")
    campaign = next((c for c in cmp.list_campaigns(r, TENANT) if c.name == CAMPAIGN["name"]), None)
    if campaign is None:
        facts = cmp.tenant_facts(
            r, TENANT, lambda: {int(s["id"]) for s in list_segments(settings)} or None
        )
        campaign = cmp.create_campaign(r, TENANT, CAMPAIGN, facts)
        step("campaign", f"{CAMPAIGN['name']!r} running")
    else:
        step("campaign", f"{campaign.name!r} {campaign.status}")
    if world is not None:
        _describe(r, settings, world, campaign)
    return Demo(keys, steps)


def _install(r: redis.Redis, settings: Settings, world: DemoWorld) -> None:
    import_crm(
        r, TENANT, world.csv(world.customers), world.csv(world.holdings),
        settings=settings, options=ImportOptions(id_column="customer_id"),
        customers_name="demo-customers.csv", holdings_name="demo-holdings.csv",
    )  # fmt: skip
    tenant = get_tenant(r, TENANT)
    assert tenant is not None
    ingestor = Ingestor(r)
    on_zip = partial(zip_block, settings=settings)
    for visitor, t, events in world.sessions:
        ingestor.ingest(tenant, visitor, events, on_zip=on_zip, now=t)
    Archiver(r, events_store(settings)).archive_tenant(TENANT)


def _place(settings: Settings, zip_code: str) -> str:
    block = zip_block(zip_code, "US", settings)
    return ", ".join(str(block[k]) for k in ("place", "state_code") if block.get(k))


def _describe(r: redis.Redis, settings: Settings, world: DemoWorld, campaign: cmp.Campaign) -> None:
    """What the shop page lists: a ZIP to try per segment, customers to log in as."""
    tenant = get_tenant(r, TENANT)
    assert tenant is not None

    def group_of(customer_id: str) -> str:
        """The customer's group in the campaign, or "holdout" when the tenant-wide holdout
        (popular offers only) draws them: the shop lists none of those."""
        person = person_of("", tenant.hash_customer_id(customer_id))
        if draw(tenant.id_secret, HOLDOUT, person, tenant.holdout_share) == CONTROL:
            return "holdout"
        return draw(tenant.id_secret, campaign.id, person, campaign.control_share)

    people = showcase(world, group_of, CAMPAIGN["offer"]["product_id"])
    for c in people:
        c["place"] = _place(settings, c["zip"])
    segments = [
        {"id": s.id, "theme": s.theme, "label": s.label, "tastes": list(s.tastes),
         "example_zip": s.example_zip, "place": _place(settings, s.example_zip)}
        for s in world.segments
    ]  # fmt: skip
    body = {"segments": segments, "customers": people}
    world_file(settings).write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))


def export_files(settings: Settings, folder: Path, shop_url: str = "https://shop.example") -> dict:
    """The demo's catalog and CRM extract as CSV files in ``folder`` (the README's walk-through
    imports them into a tenant of its own); the people are drawn as the demo draws them."""
    seg, table = segmentation(settings), demographics(settings)
    if seg is None or table is None:
        raise ValueError("no ZIP census table or segments: load them first (README, Data)")
    world = generate(seg, table, now=time.time())
    folder.mkdir(parents=True, exist_ok=True)
    rows = catalog_rows(shop_url)
    with (folder / "catalog.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(catalog.COLUMNS))
        writer.writeheader()
        writer.writerows({**row, "active": "true"} for row in rows)
    (folder / "customers.csv").write_bytes(world.csv(world.customers))
    (folder / "holdings.csv").write_bytes(world.csv(world.holdings))
    return {
        "catalog": {"path": str(folder / "catalog.csv"), "products": len(rows)},
        "customers": {"path": str(folder / "customers.csv"), "rows": world.customers.num_rows},
        "holdings": {"path": str(folder / "holdings.csv"), "rows": world.holdings.num_rows},
    }


def read_world(settings: Settings) -> dict:
    path = world_file(settings)
    return orjson.loads(path.read_bytes()) if path.exists() else {"segments": [], "customers": []}
