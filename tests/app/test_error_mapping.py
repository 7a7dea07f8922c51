"""Domain errors reach HTTP through one mapping (app.errors), whichever path raised them."""

from __future__ import annotations

import pytest

from app.errors import DOMAIN_ERRORS, domain_error_answer
from enrichment.crm import CrmBusy, CrmError
from enrichment.crm.versions import tenant_lock
from store.ratelimit import Refused


@pytest.mark.parametrize(("cls", "status", "prefix", "retry_after"), DOMAIN_ERRORS)
def test_every_mapped_class_answers_in_the_json_shape(cls, status, prefix, retry_after) -> None:
    err = cls("something the caller can fix")
    answer = domain_error_answer(err)
    assert answer is not None and answer.status == status
    assert answer.payload["code"] == status
    assert answer.payload["message"] == f"{prefix}something the caller can fix"
    assert ("Retry-After" in answer.headers) == (retry_after is not None)


def test_a_subclass_is_answered_by_its_own_entry_not_its_parents() -> None:
    classes = [entry[0] for entry in DOMAIN_ERRORS]
    for i, cls in enumerate(classes):
        for later in classes[i + 1 :]:
            # A subclass listed after its parent would never be reached.
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"
    assert domain_error_answer(CrmBusy("x")).status == 409
    assert domain_error_answer(CrmError("x")).status == 422


def test_refused_keeps_its_status_and_retry_after() -> None:
    answer = domain_error_answer(Refused("event backlog full", retry_after=7, status=503))
    assert answer is not None and answer.status == 503
    assert answer.headers == {"Retry-After": "7"}


def test_an_unknown_error_is_not_mapped() -> None:
    assert domain_error_answer(KeyError("bug")) is None


def test_a_crm_import_while_the_tenant_is_locked_is_a_409_with_retry_after(client, r, acme):
    with tenant_lock(r, "acme"):
        res = client.post(
            "/v1/admin/crm",
            data="customer_id,zip\nC-1,10001\n",
            content_type="text/csv",
            headers={"Authorization": f"Bearer {acme['admin_key']}"},
        )
    assert res.status_code == 409, res.json
    assert res.json["message"].startswith("crm: another CRM import")
    assert res.headers["Retry-After"] == "5"
