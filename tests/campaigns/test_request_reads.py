"""The offer request's one script call reads what an identified visitor needs (other devices,
CRM profile, campaign record) exactly as the separate reads it replaced do."""

from __future__ import annotations

from pathlib import Path

from campaigns.assignment import parse_person, person_of, read_person
from campaigns.request_reads import RequestReads
from clickstream.ingest import Ingestor
from clickstream.profiles import read_profile, with_identity
from enrichment.crm import customer_from_reads, get_customer, import_crm
from store import keys
from store.tenants import get_tenant
from tests.helpers import event


def _login(r, tenant, visitor: str, customer: str, *views: str) -> None:
    events = [event(product_id=p) for p in views] + [event("identify", customer_id=customer)]
    Ingestor(r).ingest(tenant, visitor, events)


def test_identified_reads_in_one_call_equal_the_separate_reads(
    r, acme, acme_catalog, settings, tmp_path: Path
):
    tenant = get_tenant(r, "acme")
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,zip,age\nC-1,10001,34\nC-2,94110,51\n")
    holdings = tmp_path / "holdings.csv"
    holdings.write_text("customer_id,product_id\nC-1,p1\nC-1,p3\n")
    import_crm(r, "acme", customers, holdings, settings=settings)
    _login(r, tenant, "laptop", "C-1", "p2", "p4")
    _login(r, tenant, "phone", "C-1", "p5")
    _login(r, tenant, "tablet", "C-1")
    c1 = tenant.hash_customer_id("C-1")
    r.hset(keys.person_campaigns("acme", f"c:{c1}"), "cmp1", "treated|1700000000|1.0|")
    reads = RequestReads()

    state = reads.read(r, "acme", "laptop", read_popular=False, track=True)
    ident = state.identity
    assert ident is not None and ident.customer == c1
    assert sorted(ident.linked) == [b"laptop", b"phone", b"tablet"]
    merged = with_identity(r, "acme", state.profile, ident.linked)
    separate = with_identity(r, "acme", read_profile(r, "acme", "laptop"))
    assert merged.counters == separate.counters and merged.cart == separate.cart
    assert sorted(merged.recent) == sorted(separate.recent)
    assert merged.affinities.keys() == separate.affinities.keys()
    customer = customer_from_reads(r, "acme", ident.customer, ident.serving_id, ident.blob)
    assert customer == get_customer(r, "acme", c1) and customer is not None
    assert {h["product_id"] for h in customer["holdings"]} == {"p1", "p3"}
    person = person_of("laptop", c1)
    assert parse_person(ident.person) == read_person(r, "acme", person)
    assert parse_person(ident.person).groups == {"cmp1": "treated"}


def test_no_identity_reads_for_anonymous_untracked_or_crm_less_visitors(r, acme, acme_catalog):
    tenant = get_tenant(r, "acme")
    Ingestor(r).ingest(tenant, "anon", [event(product_id="p1")])
    reads = RequestReads()
    assert reads.read(r, "acme", "anon", read_popular=False, track=True).identity is None
    assert reads.read(r, "acme", "nobody", read_popular=False, track=True).identity is None
    _login(r, tenant, "known", "C-9")
    untracked = reads.read(r, "acme", "known", read_popular=False, track=False)
    assert untracked.identity is None
    # Identified, but the tenant has no CRM version live: no customer profile, as get_customer.
    state = reads.read(r, "acme", "known", read_popular=False, track=True)
    assert state.identity is not None and state.identity.serving_id is None
    ident = state.identity
    assert customer_from_reads(r, "acme", ident.customer, ident.serving_id, ident.blob) is None
    assert get_customer(r, "acme", ident.customer) is None


def test_a_malformed_customer_on_the_profile_names_no_key(r, acme):
    r.hset(keys.visitor_key("acme", "odd"), mapping={"customer": "../../x", "n_page_view": 1})
    state = RequestReads().read(r, "acme", "odd", read_popular=False, track=True)
    assert state.identity is None
