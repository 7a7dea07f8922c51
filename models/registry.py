"""Model registry: every training run is a version; one version per tenant is the champion.

Metadata lives in Redis (so every app node sees a promotion at once), artifacts in the data dir
under ``artifacts/models/<tenant>/<version>/``. A new version becomes champion automatically only
when it beats the current champion on the same holdout; staff can promote any version or roll
back to the previous champion. Serving reads the champion pointer in the same round trip as the
rest of a request and loads a new champion's artifacts before switching, so no request fails
during a switch.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import orjson
import redis

from store import keys
from store.artifacts import ARTIFACTS, artifacts_for, join_key
from store.config import Settings
from store.redis_client import reply_text


class RegistryError(ValueError):
    """A registry change refused for a reason the caller can fix."""


class UnknownVersion(RegistryError):
    """No such model version for the tenant."""


class NothingToRollBack(RegistryError):
    """No earlier champion that still exists."""


# Named in store.keys; kept here under the names callers import.
versions_key = keys.model_versions
champion_key = keys.model_champion
history_key = keys.champion_history
trained_versions_key = keys.trained_model_versions


def new_version_id(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now or time.time()))
    return f"v{stamp}-{secrets.token_hex(2)}"


def version_key(tenant: str, version: str) -> str:
    return join_key(ARTIFACTS, "models", tenant, version)


def version_dir(settings: Settings, tenant: str, version: str) -> Path:
    """A local folder holding the version's files, to read (the folder itself in the local
    store; a cached copy of the published version with an object store)."""
    return artifacts_for(settings).local_path(version_key(tenant, version))


def write_version_file(
    settings: Settings, tenant: str, version: str, name: str, data: bytes
) -> None:
    """Add or replace one file of a published version (atomically, through the store)."""
    artifacts_for(settings).write_bytes(join_key(version_key(tenant, version), name), data)


def champion(r: redis.Redis, tenant: str) -> str | None:
    return reply_text(r.get(champion_key(tenant)))


def get_version(r: redis.Redis, tenant: str, version: str) -> dict | None:
    raw = r.hget(versions_key(tenant), version)
    return orjson.loads(raw) if raw else None


def list_versions(r: redis.Redis, tenant: str) -> list[dict]:
    current = champion(r, tenant)
    versions = [orjson.loads(v) for v in r.hvals(versions_key(tenant))]
    retrain = {
        reply_text(k): reply_text(v) for k, v in r.hgetall(keys.models_to_retrain(tenant)).items()
    }
    for v in versions:
        v["champion"] = v["version"] == current
        if v["version"] in retrain:  # saw a person since erased: `models retrain-erased`
            v["retrain_because"] = retrain[v["version"]]
    return sorted(versions, key=lambda v: v.get("trained_at", 0), reverse=True)


def supersede(r: redis.Redis, tenant: str, version: str, by: str, why: str) -> None:
    """Mark ``version`` as replaced by ``by``; rollback never goes back to it (staff can still
    promote it by name)."""
    meta = get_version(r, tenant, version)
    if meta is None:
        return
    meta.update(superseded_by=by, superseded_because=why, superseded_at=time.time())
    pipe = r.pipeline(transaction=True)
    pipe.hset(versions_key(tenant), version, orjson.dumps(meta))
    pipe.lrem(history_key(tenant), 0, version)
    pipe.execute()


def delete_version(r: redis.Redis, settings: Settings, tenant: str, version: str) -> None:
    """Remove a version that is not the champion: registry entry, live samples and artifacts."""
    if get_version(r, tenant, version) is None:
        raise UnknownVersion(f"version: no model version {version!r} for tenant {tenant!r}")
    if champion(r, tenant) == version:
        raise RegistryError(f"version: {version!r} is the champion; promote another one first")
    pipe = r.pipeline(transaction=True)
    pipe.hdel(versions_key(tenant), version)
    pipe.lrem(history_key(tenant), 0, version)
    pipe.srem(trained_versions_key(tenant), version)
    pipe.delete(keys.model_drift(tenant, version))
    pipe.execute()
    artifacts_for(settings).delete(join_key(ARTIFACTS, "models", tenant, version))


def promote(r: redis.Redis, tenant: str, version: str, reason: str = "staff") -> dict:
    meta = get_version(r, tenant, version)
    if meta is None:
        raise UnknownVersion(f"version: no model version {version!r} for tenant {tenant!r}")
    stamped = orjson.dumps({**meta, "promoted_at": time.time(), "promoted_because": reason})

    def switch(pipe: redis.client.Pipeline) -> str | None:
        # WATCHed: two staff promoting at once cannot both push the same previous champion.
        previous = reply_text(pipe.get(champion_key(tenant)))
        if previous == version:
            return previous
        pipe.multi()
        if previous:
            pipe.lpush(history_key(tenant), previous)
            pipe.ltrim(history_key(tenant), 0, 99)
        pipe.set(champion_key(tenant), version)
        pipe.hset(versions_key(tenant), version, stamped)
        return previous

    # redis-py types the callback as returning None; value_from_callable returns its value.
    previous = r.transaction(switch, champion_key(tenant), value_from_callable=True)  # type: ignore[arg-type]
    changed = previous != version
    out = {"tenant": tenant, "champion": version, "previous": previous, "changed": changed}
    return {**out, "reason": reason} if changed else out


# Pops former champions until one whose version still exists, and switches to it, atomically:
# two rollbacks at once go back two steps, never twice to the same version.
_ROLLBACK = """
local current = redis.call('GET', KEYS[2])
while true do
  local previous = redis.call('LPOP', KEYS[1])
  if not previous then return {false, current} end
  if redis.call('HEXISTS', KEYS[3], previous) == 1 then
    redis.call('SET', KEYS[2], previous)
    return {previous, current}
  end
end
"""


def rollback(r: redis.Redis, tenant: str) -> dict:
    """Make the previous champion (that still exists) the champion again."""
    previous, current = r.eval(
        _ROLLBACK, 3, history_key(tenant), champion_key(tenant), versions_key(tenant)
    )
    if previous is None:
        raise NothingToRollBack("no earlier champion to roll back to")
    return {
        "tenant": tenant,
        "champion": reply_text(previous),
        "previous": reply_text(current),
        "changed": True,
        "reason": "rollback",
    }


def register(
    r: redis.Redis,
    tenant: str,
    version: str,
    meta: dict,
    *,
    challenger_score: float,
    champion_score: float | None,
    auto_promote: bool = True,
) -> dict:
    """Record a trained version; promote it when it beats the champion on the same holdout.

    ``challenger_score`` and ``champion_score`` are the same metric (higher is better) on the
    challenger's holdout; ``champion_score`` is None when there is no champion or it could not
    be evaluated on that holdout (then only a tenant without champion promotes automatically).
    """
    record = {
        **meta,
        "version": version,
        "holdout_score": challenger_score,
        "champion_score_same_holdout": champion_score,
    }
    pipe = r.pipeline(transaction=True)
    pipe.hset(versions_key(tenant), version, orjson.dumps(record))
    pipe.sadd(trained_versions_key(tenant), version)
    pipe.execute()
    current = champion(r, tenant)
    decision = {"version": version, "promoted": False, "champion": current}
    if not auto_promote:
        decision["why"] = "auto-promotion disabled"
    elif current is None:
        decision.update(promote(r, tenant, version, "first model of the tenant"), promoted=True)
    elif champion_score is None:
        decision["why"] = "the champion could not be evaluated on this holdout; promote by hand"
    elif challenger_score > champion_score:
        why = f"beats champion {current} on the same holdout ({challenger_score:.4f} > {champion_score:.4f})"
        decision.update(promote(r, tenant, version, why), promoted=True)
    else:
        decision["why"] = (
            f"does not beat champion {current} on the same holdout ({challenger_score:.4f} <= {champion_score:.4f})"
        )
    return decision
