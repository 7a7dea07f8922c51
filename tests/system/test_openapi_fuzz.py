"""Schemathesis against the OpenAPI document: whatever a client sends, never a 5xx.

Each operation is fuzzed with valid credentials attached (so requests get past authentication
into validation and the domain), with none, with another tenant's and with the wrong kind of
key; and its generated body is sent as it is, with a lone surrogate in every string, or
replaced by JSON nested past the depth limit. What the schema alone generates found none of
the 500s of issue 11 (surrogates, RecursionError, parsing before authentication).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from clickstream.schemas import MAX_JSON_DEPTH
from tests.app.test_request_bodies import nested
from tests.helpers import batch

EXAMPLES = 60


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", app)


def _operations(schema) -> list:
    ops = []
    for result in schema.get_all_operations():
        op = result.ok() if hasattr(result, "ok") else result
        ops.append(op)
    return ops


def test_schema_is_valid_and_complete(api_schema):
    paths = {op.path for op in _operations(api_schema)}
    assert {
        "/v1/collect",
        "/v1/recommend",
        "/v1/admin/catalog",
        "/v1/staff/tenants",
        "/healthz",
    } <= paths


LONE = "\ud800"
DEEP_BODIES = [b"[" * 10_000, json.dumps({"x": nested(MAX_JSON_DEPTH)}).encode()]
# Every operation with a JSON body parses it with the shared parser, but the catalog upload,
# which parses its own (clickstream.catalog: 422 past orjson's 1024 levels).
OWN_JSON_PARSER = {"/v1/admin/catalog"}


def with_lone_surrogates(value: object) -> object:
    """``value`` with half of a UTF-16 pair in the middle of every string, keys included."""
    if isinstance(value, str):
        return value[: len(value) // 2] + LONE + value[len(value) // 2 :]
    if isinstance(value, list):
        return [with_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {with_lone_surrogates(k): with_lone_surrogates(v) for k, v in value.items()}
    return value


def _area(path: str) -> str:
    return (
        "admin"
        if path.startswith("/v1/admin/")
        else "staff"
        if path.startswith("/v1/staff/")
        else "site"
    )


def _credential(area: str, kind: str, acme: dict, rival: dict) -> dict[str, str]:
    """Headers for one kind of credential: valid, none, rival (another tenant's key; for the
    staff area, a tenant's admin key) or wrong kind (a site key for admin, and so on)."""
    bearer = {
        ("admin", "valid"): acme["admin_key"], ("admin", "rival"): rival["admin_key"],
        ("admin", "wrong kind"): acme["site_key"], ("staff", "valid"): "staff-secret-token",
        ("staff", "rival"): acme["admin_key"], ("staff", "wrong kind"): acme["site_key"],
    }  # fmt: skip
    if area != "site":
        token = bearer.get((area, kind))
        return {"Authorization": f"Bearer {token}"} if token else {}
    site = {"valid": acme["site_key"], "rival": rival["site_key"], "wrong kind": acme["admin_key"]}
    return {"X-Site-Key": site[kind]} if kind in site else {}


def _fuzzer(op, acme: dict, rival: dict, failures: list[str]):
    area = _area(op.path)
    takes_json = op.path not in OWN_JSON_PARSER and any(
        "json" in media for media in op.definition.raw.get("requestBody", {}).get("content", {})
    )

    # No shrinking: the failure list names the case, and shrinking every failing operation
    # (a deep body's traceback is long) took minutes.
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate], report_multiple_bugs=False,
    )  # fmt: skip
    @given(
        case=op.as_strategy(),
        credential=st.sampled_from(["valid", "valid", "none", "rival", "wrong kind"]),
        body=st.sampled_from(["generated", "generated", "lone surrogates", "deep"]),
        deep=st.sampled_from(DEEP_BODIES),
    )
    def run(case, credential, body, deep):
        headers = {**(case.headers or {}), **_credential(area, credential, acme, rival)}
        site = _credential("site", credential, acme, rival).get("X-Site-Key")
        for where in (case.body, case.query):
            if isinstance(where, dict) and "site" in where:
                if site is None:
                    del where["site"]
                else:
                    where["site"] = site
        extra: dict = {}
        if body == "lone surrogates" and isinstance(case.body, (dict, list, str)):
            # Sent in place of the generated body: schemathesis cannot revalidate such strings.
            extra["json"] = with_lone_surrogates(case.body)
        elif body == "deep":
            headers["Content-Type"] = "application/json"
            extra["data"] = deep
        try:
            try:
                res = case.call_and_validate(headers=headers, checks=[not_a_server_error], **extra)
            except FailureGroup as group:  # not an AssertionError: it would end the whole run
                raise AssertionError(str(group)) from None
            refused = credential in ("none", "wrong kind") or (area, credential) == (
                "staff",
                "rival",
            )
            if area != "site" and refused:
                assert res.status_code == 401, ("a request without a valid key", res.status_code)
            elif body == "deep" and takes_json:
                assert res.status_code == 400, ("a body nested too deep", res.status_code)
            if area == "admin" and credential == "rival":
                assert b"acme" not in res.content, "another tenant's key reached acme's data"
        except AssertionError as err:
            failure = f"{op.method.upper()} {op.path} [{credential}, {body}]: {str(err)[:800]}"
            if failure not in failures:  # hypothesis runs a failing example once more
                failures.append(failure)
            raise

    return run


def test_fuzz_every_operation_without_server_errors(app, api_schema, r, acme, acme_catalog, client):
    from store.tenants import create_tenant

    rival = create_tenant(r, "rival", ["https://rival.example"], rate_limit=10_000)
    client.post("/v1/collect", json=batch(acme["site_key"]))
    failures: list[str] = []
    fuzzed = 0
    for op in _operations(api_schema):
        if op.path == "/v1/staff/tenants/{name}/rotate-keys":
            continue  # rotating keys mid-run would lock the fuzzer out of the other operations
        try:
            _fuzzer(op, acme, rival, failures)()
        except* AssertionError:
            pass  # recorded in `failures`; keep fuzzing the other operations
        fuzzed += 1
    assert fuzzed >= 12
    assert not failures, "\n".join(failures)
