"""Erasure: after POST /v1/admin/erase no trace of the person is left anywhere."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from clickstream.archiver import Archiver, read_archive
from enrichment.crm import get_customer, import_crm
from store.tenants import get_tenant
from tests.helpers import batch, event


def _post(client, site, visitor, *events):
    assert client.post("/v1/collect", json=batch(site, visitor, list(events))).status_code == 200


def _redis_mentions(r, needle: bytes, allowed: tuple[bytes, ...] = ()) -> list[bytes]:
    found = []
    for key in r.scan_iter(count=1000):
        if any(part in key for part in allowed):
            continue
        if needle in key or needle in (r.dump(key) or b""):
            found.append(key)
    return found


def test_erase_customer_removes_every_trace(
    client, r, acme, acme_catalog, settings, tmp_path: Path
):
    tenant = get_tenant(r, "acme")
    alice_hash = tenant.hash_customer_id("C-1")
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "customer_id,zip,age,income\nC-1,10001,34,81000\nC-2,94110,51,120000\nC-3,60614,29,56000\n"
    )
    holdings = tmp_path / "holdings.csv"
    holdings.write_text("customer_id,product_id\nC-1,p1\nC-2,p2\nC-1,p3\n")
    import_crm(r, "acme", customers, holdings, settings=settings)
    import_crm(
        r, "acme", customers.read_bytes().replace(b"81000", b"82000"), holdings, settings=settings
    )  # 2 versions kept
    assert get_customer(r, "acme", alice_hash) is not None

    site = acme["site_key"]
    _post(
        client, site, "v-alice-laptop", event(product_id="p1"), event("identify", customer_id="C-1")
    )
    _post(
        client,
        site,
        "v-alice-phone",
        event("add_to_cart", product_id="p2"),
        event("identify", customer_id="C-1"),
    )
    _post(client, site, "v-bob", event(product_id="p4"))
    Archiver(r, settings.events_dir).archive_tenant("acme")
    _post(client, site, "v-alice-laptop", event(product_id="p5"))  # still in the stream
    assert read_archive(settings.events_dir, "acme").num_rows == 5

    res = client.post(
        "/v1/admin/erase",
        json={"customer_id": "C-1"},
        headers={"Authorization": f"Bearer {acme['admin_key']}"},
    )
    assert res.status_code == 200, res.json
    receipt = res.json
    assert receipt["customer_hash"] == alice_hash and receipt["visitors_erased"] == 2
    assert receipt["removed"]["archived_events"] == 4 and receipt["removed"]["stream_events"] == 1
    assert (
        receipt["removed"]["crm_rows"] == 2
        and len(receipt["removed"]["crm_versions_rewritten"]) == 2
    )

    # Live store: nothing mentions the visitors or the customer, except the erasure receipt and
    # the CRM suppression list, which hold only the keyed hash so a re-import cannot resurrect her.
    allowed = (b":erasures", b":erased")
    for needle in (b"v-alice", alice_hash.encode(), b"C-1"):
        assert _redis_mentions(r, needle, allowed) == [], needle
    assert get_customer(r, "acme", alice_hash) is None
    assert get_customer(r, "acme", tenant.hash_customer_id("C-2")) is not None
    # Archive: Bob's events stay, Alice's are gone.
    table = read_archive(settings.events_dir, "acme")
    assert set(table.column("visitor").to_pylist()) == {"v-bob"}
    # CRM versions on disk: no row of hers in any kept version.
    for path in (settings.crm_dir / "acme").rglob("*.parquet"):
        for column in pq.read_table(path).columns:
            assert alice_hash not in [str(v) for v in column.to_pylist()], path
    listed = client.get(
        "/v1/admin/erasures", headers={"Authorization": f"Bearer {acme['admin_key']}"}
    ).json
    assert listed["receipts"][0]["receipt_id"] == receipt["receipt_id"]


def test_erase_visitor_only_and_bad_requests(client, r, acme, acme_catalog):
    site, auth = acme["site_key"], {"Authorization": f"Bearer {acme['admin_key']}"}
    _post(client, site, "v-anon", event(product_id="p1"))
    _post(client, site, "v-other", event(product_id="p2"))
    _post(client, site, "v-anon:2", event(product_id="p2"))  # a prefix is not the same visitor
    res = client.post("/v1/admin/erase", json={"visitor_id": "v-anon"}, headers=auth)
    assert res.status_code == 200 and res.json["removed"]["stream_events"] == 1
    assert res.json["removed"]["dedupe_keys"] == 1
    assert _redis_mentions(r, b"v-anon", (b":erasures", b"v-anon:2")) == []
    assert _redis_mentions(r, b"v-other") != []
    assert _redis_mentions(r, b"v-anon:2") != []
    bad = client.post("/v1/admin/erase", json={}, headers=auth)
    assert bad.status_code == 422 and "customer_id" in bad.json["message"]
    assert client.post("/v1/admin/erase", json={"visitor_id": "v-other"}).status_code == 401


def _files_mentioning(folder: Path, needle: bytes) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_erasure_leaves_no_copy_in_redis_append_only_file(tmp_path: Path) -> None:
    """The person's events had left the stream for the archive, so only Redis's append-only
    log still held them; the erasure rewrites it."""
    import time

    from app import create_app
    from store.config import Settings
    from store.embedded import EmbeddedRedis
    from store.redis_client import reset_clients
    from store.tenants import create_tenant

    embedded = EmbeddedRedis(tmp_path / "var" / "redis")
    url = embedded.acquire("test")
    try:
        reset_clients()
        settings = Settings(data_dir=tmp_path / "var", redis_url=url)
        r = embedded.client()
        keys = create_tenant(r, "acme", ["https://shop.example"], rate_limit=10_000)
        client = create_app(settings).test_client()
        secret = "visitor-7f3a9c1e-to-be-forgotten"
        _post(client, keys["site_key"], secret, event(), event("add_to_cart"))
        _post(client, keys["site_key"], "someone-else", event())
        Archiver(r, settings.events_dir).archive_tenant("acme")
        assert r.xlen("{t:acme}:events") == 0
        redis_dir = settings.redis_dir
        assert _files_mentioning(redis_dir, secret.encode()), "precondition: the AOF holds it"

        res = client.post(
            "/v1/admin/erase",
            json={"visitor_id": secret},
            headers={"Authorization": f"Bearer {keys['admin_key']}"},
        )
        assert res.status_code == 200, res.json
        assert res.json["redis_append_only_file"] == "rewritten"
        deadline = time.monotonic() + 10  # Redis removes the old log files in the background
        while _files_mentioning(redis_dir, secret.encode()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _files_mentioning(redis_dir, secret.encode()) == []
        assert r.sismember("offerwise:tenants", "acme")  # the rewrite kept the live data
    finally:
        reset_clients()
        embedded.release()
