"""ZIP enrichment through the collect path, the segments API, CRM uploads through the admin API."""

from __future__ import annotations

import io

import pytest

from clickstream.profiles import read_profile
from tests.helpers import batch, event


@pytest.fixture
def enriched(app, shared_data, geo_dir, monkeypatch):
    """Real GeoNames files, the real ZIP census table, and a small segmentation."""
    from dataclasses import replace

    from enrichment.demographics import load_demographics
    from enrichment.segments import build_segments

    settings = replace(app.config["OFFERWISE_SETTINGS"], geo_dir=geo_dir)
    app.config["OFFERWISE_SETTINGS"] = settings
    app.extensions.pop("offerwise", None)
    load_demographics(shared_data / "zcta_demographics.csv", settings)
    build_segments(settings, k=8, seed=1)
    return settings


def admin(keys: dict) -> dict:
    return {"Authorization": f"Bearer {keys['admin_key']}"}


def test_zip_event_puts_geo_demographics_and_segment_on_profile(client, r, acme, enriched):
    res = client.post(
        "/v1/collect", json=batch(acme["site_key"], "nyc", [event("zip", zip="10001")])
    )
    assert res.status_code == 200
    profile = read_profile(r, "acme", "nyc")
    block = profile.zip_block()
    assert block["place"] == "New York" and block["state_code"] == "NY"
    assert float(block["demo_population"]) > 10_000
    assert block["segment_id"].isdigit() and block["segment_label"]
    # An invalid code is stored as such, never an error for the batch.
    res = client.post(
        "/v1/collect", json=batch(acme["site_key"], "typo", [event("zip", zip="1O0O1")])
    )
    assert res.status_code == 200
    assert read_profile(r, "acme", "typo").zip_block()["status"] == "invalid"


@pytest.mark.parametrize(
    ("code", "status", "says"),
    [
        ("10001", "ok", "Offers for New York, NY"),
        ("00000", "unknown", "00000 is not a ZIP code we know"),
        ("1O0O1", "invalid", "US ZIP code must be 5 digits"),
    ],
)
def test_collect_answer_says_what_a_zip_is(client, acme, enriched, code, status, says):
    res = client.post("/v1/collect", json=batch(acme["site_key"], "v", [event("zip", zip=code)]))
    assert res.status_code == 200
    assert res.json["zip"]["status"] == status
    assert says in res.json["zip"]["reason"]
    # Without a profile (GPC), the visitor who typed it still hears the same.
    res = client.post(
        "/v1/collect",
        json=batch(acme["site_key"], "w", [event("zip", zip=code)]),
        headers={"Sec-GPC": "1"},
    )
    assert res.json["profile"] is False and res.json["zip"]["status"] == status
    # A batch without a ZIP says nothing about one.
    res = client.post("/v1/collect", json=batch(acme["site_key"], "v", [event("page_view")]))
    assert "zip" not in res.json


def test_segments_api_lists_described_segments(client, acme, enriched):
    res = client.get("/v1/admin/segments", headers=admin(acme))
    assert res.status_code == 200
    segments = res.json["segments"]
    assert len(segments) == 8 and res.json["segmentation"]["k"] == 8
    assert all(s["label"] and s["description"] for s in segments)
    assert len({s["label"] for s in segments}) == 8
    assert client.get("/v1/admin/segments").status_code == 401


CUSTOMERS = "customer_id,zip,age,income,tier\nC-1,10001,34,81000,gold\nC-2,94110,51,120000,silver\nC-3,60614,29,56000,gold\n"


def test_crm_upload_raw_and_multipart_with_versions_and_rollback(client, r, acme):
    res = client.post("/v1/admin/crm", data=CUSTOMERS, content_type="text/csv", headers=admin(acme))
    assert res.status_code == 200, res.json
    assert res.json["rows_imported"] == 3
    holdings = "customer_id,product_id\nC-1,p1\nC-2,p2\n"
    res = client.post(
        "/v1/admin/crm",
        data={
            "customers": (io.BytesIO(CUSTOMERS.replace("81000", "90000").encode()), "c.csv"),
            "holdings": (io.BytesIO(holdings.encode()), "h.csv"),
        },
        content_type="multipart/form-data",
        headers=admin(acme),
    )
    assert res.status_code == 200, res.json
    versions = client.get("/v1/admin/crm/versions", headers=admin(acme)).json
    assert len(versions["versions"]) == 2
    from enrichment.crm import get_customer
    from store.tenants import get_tenant

    c1 = get_tenant(r, "acme").hash_customer_id("C-1")
    assert [h["product_id"] for h in get_customer(r, "acme", c1)["holdings"]] == ["p1"]
    assert get_customer(r, "acme", c1)["attributes"]["income"] == 90000
    assert client.post("/v1/admin/crm/rollback", headers=admin(acme)).status_code == 200
    assert get_customer(r, "acme", c1)["attributes"]["income"] == 81000
    assert get_customer(r, "acme", c1)["holdings"] == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"name;zip\nA;1\n", "customer_id"),
        ("customer_id,name\n1,Jos\u00e9\n".encode("utf-16"), ""),
    ],
)
def test_crm_bad_uploads_keep_previous_version(client, acme, body, needle):
    assert (
        client.post(
            "/v1/admin/crm", data=CUSTOMERS, content_type="text/csv", headers=admin(acme)
        ).status_code
        == 200
    )
    res = client.post("/v1/admin/crm", data=body, content_type="text/csv", headers=admin(acme))
    if res.status_code == 200:  # a decodable encoding is accepted and reported, never garbled
        assert res.json["rows_imported"] >= 1
    else:
        assert res.status_code == 422 and needle in res.json["message"].lower()
    live = client.get("/v1/admin/crm/versions", headers=admin(acme)).json
    assert live["live_version"] == live["versions"][0]["version"]


def test_crm_background_import_runs_in_worker(client, r, acme, settings):
    res = client.post(
        "/v1/admin/crm?background=true",
        data=CUSTOMERS,
        content_type="text/csv",
        headers=admin(acme),
    )
    assert res.status_code == 202
    job_id = res.json["job"]
    from app.worker import run_worker

    run_worker(settings, burst=True)
    status = client.get(f"/v1/admin/jobs/{job_id}", headers=admin(acme)).json
    assert status["status"] == "finished" and status["result"]["rows_imported"] == 3
    assert client.get("/v1/admin/jobs/nope", headers=admin(acme)).status_code == 404


def test_segment_popularity_serves_visitors_of_a_zip_segment(
    client, r, acme, acme_catalog, enriched
):
    site = acme["site_key"]
    # Shoppers from Manhattan buy p2; the rest of the country buys p5.
    for i in range(4):
        client.post("/v1/collect", json=batch(site, f"ny{i}", [event("zip", zip="10001")]))
        client.post("/v1/collect", json=batch(site, f"ny{i}", [event("purchase", product_id="p2")]))
        client.post(
            "/v1/collect",
            json=batch(
                site,
                f"far{i}",
                [event("purchase", product_id="p5"), event("purchase", product_id="p8")],
            ),
        )
    for _ in range(2):
        client.post("/v1/collect", json=batch(site, "ny-extra", [event("zip", zip="10001")]))
        client.post(
            "/v1/collect",
            json=batch(
                site,
                "ny-extra",
                [
                    event("product_view", product_id="p0"),
                    event("product_view", product_id="p4"),
                    event("product_view", product_id="p1"),
                ],
            ),
        )
    client.post("/v1/collect", json=batch(site, "newcomer", [event("zip", zip="10001")]))
    local = client.get(f"/v1/recommend?site={site}&visitor=newcomer&n=3").json["offers"]
    anywhere = client.get(f"/v1/recommend?site={site}&visitor=nobody&n=3").json["offers"]
    assert local[0]["product_id"] == "p2" and local[0]["reason_code"] == "segment_popularity"
    assert anywhere[0]["product_id"] in {"p5", "p8"} and anywhere[0]["reason_code"] == "trending"
