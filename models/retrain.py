"""Retrain without the erased: replace every model version trained on a person since erased.

Erasure (models.erasure) flags the versions whose lineage names the person; a training that
overlapped an erasure flags itself (models.lineage). The erased people are gone from the CRM
versions and the archive by then, so one training on the current data excludes them all.
``retrain_erased`` trains and registers that version and marks the flagged ones superseded by
it: rollback never goes back to them, and with ``delete_superseded`` their artifacts go too.

A champion that saw an erased person is replaced by the new version even when the new one
scores lower on the holdout: serving a model fitted on someone's data after they asked to be
forgotten is the larger harm, and the holdout difference of one retraining is mostly noise.
It keeps serving until the retraining is done rather than dropping the tenant to popularity:
its parameters are aggregates over thousands of people, and the retraining takes minutes.
"""

from __future__ import annotations

import redis

from models import lineage, registry
from models.pipeline import train_and_register
from models.training import ProgressFn, TrainParams
from store.config import Settings


def retrain_erased(
    r: redis.Redis,
    settings: Settings,
    tenant: str,
    *,
    products: list[str] | None = None,
    label_source: str | None = None,
    params: TrainParams | None = None,
    progress: ProgressFn | None = None,
    delete_superseded: bool = False,
) -> dict:
    """Train one version on the current data and let it supersede every flagged version.

    ``label_source`` defaults to the champion's (else the newest flagged version's), so the
    replacement learns what the replaced one learned; products default to the catalog, as
    for ``offerwise train``. TrainingError leaves every flag in place.
    """
    flagged = lineage.flagged(r, tenant)
    registered = {v: why for v, why in flagged.items() if registry.get_version(r, tenant, v)}
    gone = set(flagged) - set(registered)  # deleted meanwhile: nothing left to replace
    if not registered:
        lineage.unflag(r, tenant, gone)
        return {
            "tenant": tenant,
            "version": None,
            "superseded": [],
            "why": "no registered model version was trained on a person since erased",
        }
    current = registry.champion(r, tenant)
    basis = registry.get_version(r, tenant, current if current else max(registered)) or {}
    label_source = label_source or basis.get("label_source") or "holdings"
    replace_champion = current in registered
    out = train_and_register(
        r,
        settings,
        tenant,
        products,
        label_source,
        params=params,
        progress=progress,
        auto_promote=not replace_champion,
    )
    new = out["version"]
    decision = out["registry"]
    if replace_champion:
        why = f"replaces champion {current}, which was trained on a person since erased"
        decision.update(registry.promote(r, tenant, new, why), promoted=True)
    superseded = []
    for version, why in sorted(registered.items()):
        registry.supersede(r, tenant, version, new, why)
        if delete_superseded:
            registry.delete_version(r, settings, tenant, version)
        superseded.append({"version": version, "why": why, "deleted": delete_superseded})
    lineage.unflag(r, tenant, [*registered, *gone])
    return {
        "tenant": tenant,
        "version": new,
        "label_source": label_source,
        "registry": decision,
        "superseded": superseded,
        "summary": out["summary"],
    }
