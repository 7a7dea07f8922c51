"""PUT /v1/admin/rules validates its body like every other: a wrong type or a misspelt rule is
a 422 naming the field, and the rules in force stay as they were."""

from __future__ import annotations

import pytest


def _admin(keys: dict) -> dict:
    return {"Authorization": f"Bearer {keys['admin_key']}"}


GOOD = {"weight": "price", "max_per_category": 3, "products": {"p1": {"priority": 2}}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_per_category": "3"}, "max_per_category"),
        ({"max_per_category": 2.5}, "max_per_category"),
        ({"max_per_category": True}, "max_per_category"),
        ({"products": {"p1": {"priority": "2"}}}, "priority"),
        ({"products": {"p1": {"priority": False}}}, "priority"),
        ({"products": {"p1": {"segments": ["1"]}}}, "segments"),
        ({"max_per_categry": 3}, "max_per_categry"),
        ({"products": {"p1": {"audiense": "all"}}}, "audiense"),
        ({"pinned": "p1"}, "pinned"),
    ],
)
def test_a_mistyped_rules_body_is_refused_by_field(client, acme, body, field) -> None:
    assert client.put("/v1/admin/rules", json=GOOD, headers=_admin(acme)).status_code == 200
    res = client.put("/v1/admin/rules", json=body, headers=_admin(acme))
    assert res.status_code == 422, res.json
    assert field in res.json["message"]
    assert client.get("/v1/admin/rules", headers=_admin(acme)).json["weight"] == "price"


def test_well_typed_rules_are_stored(client, acme) -> None:
    res = client.put("/v1/admin/rules", json=GOOD, headers=_admin(acme))
    assert res.status_code == 200
    assert res.json["products"]["p1"]["priority"] == 2.0
    assert client.get("/v1/admin/rules", headers=_admin(acme)).json["max_per_category"] == 3
