"""Registry: versions, champion by holdout comparison, staff promote and rollback."""

from __future__ import annotations

import pytest

from models import registry
from models.erasure import trained_versions_key


def test_first_version_becomes_champion_then_only_better_ones(r):
    d1 = registry.register(
        r, "acme", "v1", {"trained_at": 1}, challenger_score=0.70, champion_score=None
    )
    assert d1["promoted"] and registry.champion(r, "acme") == "v1"
    d2 = registry.register(
        r, "acme", "v2", {"trained_at": 2}, challenger_score=0.69, champion_score=0.71
    )
    assert (
        not d2["promoted"] and "does not beat" in d2["why"] and registry.champion(r, "acme") == "v1"
    )
    d3 = registry.register(
        r, "acme", "v3", {"trained_at": 3}, challenger_score=0.75, champion_score=0.71
    )
    assert d3["promoted"] and registry.champion(r, "acme") == "v3"
    d4 = registry.register(
        r, "acme", "v4", {"trained_at": 4}, challenger_score=0.99, champion_score=None
    )
    assert not d4["promoted"]
    listed = registry.list_versions(r, "acme")
    assert [v["version"] for v in listed] == ["v4", "v3", "v2", "v1"]
    assert [v["version"] for v in listed if v["champion"]] == ["v3"]
    assert {m.decode() for m in r.smembers(trained_versions_key("acme"))} == {
        "v1",
        "v2",
        "v3",
        "v4",
    }


def test_promote_and_rollback(r):
    registry.register(r, "acme", "v1", {"trained_at": 1}, challenger_score=0.7, champion_score=None)
    registry.register(r, "acme", "v2", {"trained_at": 2}, challenger_score=0.6, champion_score=0.7)
    assert registry.promote(r, "acme", "v2")["previous"] == "v1"
    assert registry.champion(r, "acme") == "v2"
    assert registry.rollback(r, "acme")["champion"] == "v1"
    with pytest.raises(registry.RegistryError):
        registry.rollback(r, "acme")
    with pytest.raises(registry.RegistryError, match="no model version"):
        registry.promote(r, "acme", "nope")
    assert registry.champion(r, "otherco") is None


def test_rollbacks_are_atomic_and_skip_versions_that_are_gone(r):
    import threading

    for i in range(1, 5):
        registry.register(r, "acme", f"v{i}", {"trained_at": i}, challenger_score=0.5, champion_score=None)  # fmt: skip
    for v in ("v2", "v3", "v4"):
        registry.promote(r, "acme", v)
    # History is v3, v2, v1; two staff roll back at the same moment.
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(registry.rollback(r, "acme"))) for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(x["champion"] for x in results) == ["v2", "v3"]
    assert registry.champion(r, "acme") == "v2"
    r.hdel(registry.versions_key("acme"), "v1")  # an erased or deleted version
    with pytest.raises(registry.RegistryError):
        registry.rollback(r, "acme")
    assert registry.champion(r, "acme") == "v2"
