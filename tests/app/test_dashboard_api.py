"""The admin endpoints the dashboard needs: the traffic overview (counters kept by the ingest
script), the segment map, the read-only model views, the catalog check, and the page itself."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from store import keys
from tests.conftest import STAFF_TOKEN
from tests.helpers import batch, event

ADMIN_PATHS = [
    "/v1/admin/overview",
    "/v1/admin/segments/map",
    "/v1/admin/models",
    "/v1/admin/models/evaluation",
]


def _admin(acme: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {acme['admin_key']}"}


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_the_dashboard_endpoints_want_an_admin_key(client, acme, path: str) -> None:
    assert client.get(path).status_code == 401
    for wrong in (acme["site_key"], STAFF_TOKEN, "nonsense"):
        res = client.get(path, headers={"Authorization": f"Bearer {wrong}"})
        assert res.status_code == 401, (wrong, res.json)
        assert res.json["message"].startswith("Authorization")


def test_the_overview_counts_events_visitors_identified_and_impressions(
    client, acme, acme_catalog
) -> None:
    site = acme["site_key"]
    headers = {"Origin": "https://shop.example"}
    offers = client.get(f"/v1/recommend?site={site}&visitor=v1&n=1", headers=headers).json
    offer = offers["offers"][0]
    seen = event("offer_impression", product_id=offer["product_id"], token=offer["token"])
    forged = event("offer_impression", product_id=offer["product_id"], token="forged")
    sent = [
        batch(site, "v1", [event(), seen, forged]),
        batch(site, "v2", [event(), event("identify", customer_id="c-1")]),
        batch(site, "v2", [event()]),  # identified now: from the profile
        batch(site, "v3", [event()]),
    ]
    for body in sent:
        res = client.post("/v1/collect", json=body, headers=headers)
        assert res.status_code == 200, res.json
    # A Do-Not-Track visitor counts in events, not as a visitor.
    res = client.post("/v1/collect", json=batch(site, "v4"), headers={**headers, "DNT": "1"})
    assert res.status_code == 200

    res = client.get("/v1/admin/overview?minutes=3&days=2", headers=_admin(acme))
    assert res.status_code == 200, res.json
    body = res.json
    assert [m["minute"] for m in body["minutes"]] == sorted(m["minute"] for m in body["minutes"])
    assert len(body["minutes"]) == 3 and len(body["days"]) == 2
    assert body["minutes"][-1]["minute"] == int(time.time()) // 60 * 60 or (
        body["minutes"][-2]["events"] > 0  # the minute turned during the test
    )
    # Every new event counts; only the impression with a verified token counts as seen.
    assert sum(m["events"] for m in body["minutes"]) == 8
    assert sum(m["impressions"] for m in body["minutes"]) == 1
    today = body["days"][0]
    assert (today["visitors"], today["identified"]) == (3, 1)
    assert today["identified_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert body["today"]["events"] == 8
    assert body["days"][1]["visitors"] == 0 and body["days"][1]["identified_share"] is None


def test_a_retried_batch_counts_once(client, acme) -> None:
    body = batch(acme["site_key"], "v1", [event(), event()])
    for _ in range(3):
        assert client.post("/v1/collect", json=body).status_code == 200
    res = client.get("/v1/admin/overview?minutes=2", headers=_admin(acme))
    assert sum(m["events"] for m in res.json["minutes"]) == 2
    assert res.json["days"][0]["visitors"] == 1


def test_the_overview_counters_expire(client, r: redis.Redis, acme) -> None:
    client.post(
        "/v1/collect", json=batch(acme["site_key"]), headers={"Origin": "https://shop.example"}
    )
    day = time.strftime("%Y-%m-%d", time.gmtime())
    for key in (keys.traffic_minutes("acme", day), keys.daily_visitors("acme", day)):
        assert 0 < r.ttl(key) <= 8 * 86400, key


@pytest.mark.parametrize("query", ["minutes=0", "minutes=1441", "days=0", "days=9", "minutes=x"])
def test_the_overview_states_its_limits(client, acme, query: str) -> None:
    res = client.get(f"/v1/admin/overview?{query}", headers=_admin(acme))
    assert res.status_code == 422, res.json
    assert res.json["message"].split(":")[0] in ("minutes", "days")


def test_the_segment_map_is_empty_without_a_segmentation(client, acme) -> None:
    res = client.get("/v1/admin/segments/map", headers=_admin(acme))
    assert res.status_code == 200
    assert res.json == {"version": None, "total": 0, "points": []}
    assert client.get("/v1/admin/segments/map?limit=0", headers=_admin(acme)).status_code == 422


def test_the_segment_map_samples_zip_centroids_with_their_segment(
    settings, acme, shared_data: Path, geo_dir: Path, tmp_path_factory
) -> None:
    from app import create_app
    from tests.synth_world import SEGMENTS_K, base_artifacts

    base = base_artifacts(shared_data, geo_dir, tmp_path_factory.getbasetemp())
    shutil.copytree(base, settings.data_dir, dirs_exist_ok=True)
    client = create_app(replace(settings, geo_dir=geo_dir)).test_client()
    res = client.get("/v1/admin/segments/map?limit=500", headers=_admin(acme))
    assert res.status_code == 200, res.json
    body = res.json
    assert body["total"] > 30_000 and len(body["points"]) == 500
    zips = [p[0] for p in body["points"]]
    assert zips == sorted(zips) and len(set(zips)) == 500
    for code, lat, lon, seg in body["points"]:
        assert len(code) == 5 and -90 <= lat <= 90 and -180 <= lon <= 180
        assert 0 <= seg < SEGMENTS_K
    assert len({p[3] for p in body["points"]}) == SEGMENTS_K
    again = client.get("/v1/admin/segments/map?limit=500", headers=_admin(acme)).json
    assert again == body


def test_models_without_a_model(client, acme) -> None:
    res = client.get("/v1/admin/models", headers=_admin(acme))
    assert res.status_code == 200
    assert res.json == {"tenant": "acme", "champion": None, "versions": []}
    res = client.get("/v1/admin/models/evaluation", headers=_admin(acme))
    assert res.status_code == 404 and res.json["message"].startswith("version:")
    res = client.get("/v1/admin/models/evaluation?version=nope", headers=_admin(acme))
    assert res.status_code == 404 and "nope" in res.json["message"]
    # A version that cannot name a file (the fuzzer sent a NUL) is not found either, not a 500.
    for odd in ("%00%5B", "..", "a%2F..%2Fb"):
        res = client.get(f"/v1/admin/models/evaluation?version={odd}", headers=_admin(acme))
        assert res.status_code == 404 and res.json["message"].startswith("version:"), odd


def test_a_catalog_check_reports_without_replacing(client, acme, acme_catalog) -> None:
    csv = b"product_id,name,category,price\nn1,New,tents,5\nbad,,tents,-1\n"
    res = client.put(
        "/v1/admin/catalog?check=true",
        data=csv,
        headers={**_admin(acme), "Content-Type": "text/csv"},
    )
    assert res.status_code == 200, res.json
    assert res.json["version"] is None
    assert (res.json["rows_imported"], res.json["rows_rejected"]) == (1, 1)
    assert res.json["errors"][0]["row"] == 3
    page = client.get("/v1/admin/catalog", headers=_admin(acme)).json
    assert page["total"] == len(acme_catalog)


def test_the_dashboard_page_is_served_with_a_strict_policy(client) -> None:
    res = client.get("/dashboard/")
    assert res.status_code == 200 and b"Offerwise dashboard" in res.data
    assert "script-src 'self'" in res.headers["Content-Security-Policy"]
    assert res.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in res.headers
    for asset in ("dashboard.js", "charts.js", "dashboard.css", "vendor/uplot/uPlot.iife.min.js"):
        got = client.get(f"/dashboard/static/{asset}")
        assert got.status_code == 200, asset
        got.close()
    assert client.get("/dashboard").status_code in (301, 308)
    staff = {"Authorization": f"Bearer {STAFF_TOKEN}"}
    assert client.get("/v1/staff/tenants", headers=staff).status_code == 200
