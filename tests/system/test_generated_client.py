"""A client generated from the OpenAPI document drives the admin and staff API of a real
``offerwise serve``: what a tenant's developer would do with openapi-python-client.

Every success answer the test reads comes back as the generated model of its documented
schema (not ``None``, which the generator returns for an undocumented answer), and a refusal
as the generated ``Error``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests

from tests.helpers import batch
from tests.system.service import Service

STAFF = "staff-token-for-the-generated-client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
CATALOG_CSV = b"product_id,name,category,price,margin\n" + b"".join(
    f"p{i},Product {i},{'tents' if i % 2 else 'stoves'},{10 + i},2\n".encode() for i in range(6)
) + b"bad,,tents,-1,0\n"  # fmt: skip
CRM_CSV = b"customer_id,zip,age\n" + b"".join(
    f"c{i},{10001 + i},{30 + i}\n".encode() for i in range(20)
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("gen")
    logs = root / "logs"
    logs.mkdir()
    svc = Service(root / "v", logs, {"OFFERWISE_STAFF_TOKEN": STAFF})
    svc.start_serve(workers=1)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def client_package(service: Service, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    if not GENERATOR.exists():
        pytest.skip("openapi-python-client is not installed (it is in the dev extras)")
    out = tmp_path_factory.mktemp("client")
    spec = out / "openapi.json"
    spec.write_bytes(requests.get(f"{service.base_url}/v1/openapi.json", timeout=10).content)
    subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(out / "offerwise_client")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("offerwise_client")
    finally:
        sys.path.remove(str(out))


def _api(package: ModuleType, module: str) -> ModuleType:
    return importlib.import_module(f"{package.__name__}.api.{module}")


def test_the_document_declares_a_server_and_the_snippet(service: Service) -> None:
    spec = requests.get(f"{service.base_url}/v1/openapi.json", timeout=10).json()
    assert spec["servers"] == [{"url": "/", "description": "The service that serves this document"}]
    snippet = spec["paths"]["/v1/snippet.js"]["get"]["responses"]["200"]["content"]
    assert "application/javascript" in snippet
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            success = [c for c in op["responses"] if c.startswith("2")]
            assert success, f"{method.upper()} {path} documents no success answer"
            assert all(op["responses"][c].get("content") for c in success), (method, path)


def test_a_generated_client_drives_the_admin_api(
    service: Service, client_package: ModuleType
) -> None:
    pkg = client_package
    models = importlib.import_module(f"{pkg.__name__}.models")
    types = importlib.import_module(f"{pkg.__name__}.types")
    staff = pkg.AuthenticatedClient(base_url=service.base_url, token=STAFF)

    # Staff: a tenant, its keys in a typed answer.
    created = _api(pkg, "staff.post_v1_staff_tenants").sync(
        client=staff, body=models.NewTenant(name="genco", origins=["https://shop.example"])
    )
    assert isinstance(created, models.NewTenantKeys), created
    listed = _api(pkg, "staff.get_v1_staff_tenants").sync(client=staff)
    assert isinstance(listed, models.TenantList)
    assert [t.tenant for t in listed.tenants] == ["genco"]
    admin = pkg.AuthenticatedClient(base_url=service.base_url, token=created.admin_key)

    tenant = _api(pkg, "admin.get_v1_admin_tenant").sync(client=admin)
    assert isinstance(tenant, models.Tenant) and tenant.tenant == "genco"

    # The catalog as a file: the report lists the bad row with its reason.
    report = _api(pkg, "admin.put_v1_admin_catalog").sync(
        client=admin, body=types.File(payload=CATALOG_CSV, file_name="catalog.csv")
    )
    assert isinstance(report, models.CatalogReport), report
    assert (report.rows_imported, report.rows_rejected) == (6, 1)
    page = _api(pkg, "admin.get_v1_admin_catalog").sync(client=admin, limit=2)
    assert isinstance(page, models.CatalogPage) and page.total == 6 and len(page.products) == 2

    # A CRM extract as a file.
    crm = _api(pkg, "crm.post_v1_admin_crm").sync(
        client=admin, body=types.File(payload=CRM_CSV, file_name="customers.csv")
    )
    assert isinstance(crm, models.CrmImport), crm
    assert crm.rows_imported >= 2
    versions = _api(pkg, "crm.get_v1_admin_crm_versions").sync(client=admin)
    assert isinstance(versions, models.CrmVersions) and versions.live_version == crm.version

    # Traffic, then the overview counts it.
    sent = requests.post(
        f"{service.base_url}/v1/collect", json=batch(created.site_key, "visitor-1"), timeout=10
    )
    assert sent.status_code == 200, sent.text
    overview = _api(pkg, "overview.get_v1_admin_overview").sync(client=admin, minutes=5)
    assert isinstance(overview, models.Overview)
    assert sum(m.events for m in overview.minutes) >= 1
    assert overview.days[0].visitors == 1

    # A campaign: created from the generated body model, paused, reported.
    body = models.Campaign.from_dict(
        {"name": "Stoves", "offer": {"product_id": "p2"}, "control_share": 0.2}
    )
    campaign = _api(pkg, "campaigns.post_v1_admin_campaigns").sync(client=admin, body=body)
    assert isinstance(campaign, models.CampaignOut), campaign
    assert campaign.status == "running"
    paused = _api(pkg, "campaigns.post_v1_admin_campaigns_name_pause").sync(
        client=admin, name=campaign.id
    )
    assert isinstance(paused, models.CampaignOut) and paused.status == "paused"
    rep = _api(pkg, "campaigns.get_v1_admin_campaigns_name_report").sync(
        client=admin, name=campaign.id
    )
    assert isinstance(rep, models.CampaignReport) and rep.treated.people == 0
    listed_campaigns = _api(pkg, "campaigns.get_v1_admin_campaigns").sync(client=admin)
    assert isinstance(listed_campaigns, models.CampaignList)
    assert [c.name for c in listed_campaigns.campaigns] == ["Stoves"]

    # Refusals come back as the generated Error, with the status and the reason.
    missing = _api(pkg, "campaigns.get_v1_admin_campaigns_name").sync_detailed(
        client=admin, name="nope"
    )
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Error)
    assert "nope" in missing.parsed.message
    stranger = pkg.AuthenticatedClient(base_url=service.base_url, token="not-a-key")
    refused = _api(pkg, "admin.get_v1_admin_tenant").sync_detailed(client=stranger)
    assert refused.status_code == 401 and isinstance(refused.parsed, models.Error)
