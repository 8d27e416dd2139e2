"""The simulator over real HTTP: conventions, status codes and bodies, faults, counters, webhooks."""

import asyncio
import hashlib
import hmac
import uuid

import httpx
import pytest

from apev_mcpsim.testing import RunningMcp


@pytest.fixture
def api(mcp_sim: RunningMcp):
    with httpx.Client(base_url=mcp_sim.base_url, timeout=10) as client:
        yield client
    mcp_sim.clear_faults()


def admin(mcp_sim: RunningMcp, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {mcp_sim.admin_key}"}
    return headers | ({"X-Tenant-ID": tenant} if tenant else {})


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({}, 400, "Tenant identification required"),
        ({"X-Tenant-ID": "ghost"}, 404, "Tenant 'ghost' not found"),
        ({"X-Tenant-ID": "dormant"}, 403, "Tenant 'dormant' is inactive"),
        ({"X-Tenant-ID": "acme"}, 401, "Not authenticated"),
        ({"X-Tenant-ID": "acme", "Authorization": "Bearer nope"}, 403, "Invalid or expired API key"),
        ({"Authorization": "Bearer acme_sk_forged"}, 403, "Invalid or expired API key"),
    ],
)
def test_auth_and_tenant_errors(api, headers, status, body) -> None:
    response = api.get("/api/v1/integrations/status", headers=headers)
    assert response.status_code == status
    assert response.json()["detail"] == body
    if status == 400:
        assert "X-Tenant-ID" in response.json()["message"]


def test_tenant_key_gives_the_tenant_and_nothing_else(api, mcp_sim) -> None:
    key = mcp_sim.tenant_key("acme")
    assert api.get("/api/v1/integrations/status", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    cross = api.get("/api/v1/integrations/status", headers={"Authorization": f"Bearer {key}", "X-Tenant-ID": "default"})
    assert cross.status_code == 403
    mint = api.post("/api/v1/tenants/default/api-keys", headers={"Authorization": f"Bearer {key}"})
    assert mint.status_code == 403


def test_validation_errors_are_422_lists(api, mcp_sim) -> None:
    reg = api.post("/api/v1/integrations/register", headers=admin(mcp_sim, "acme"), json={"integration_type": "sap"})
    assert reg.status_code == 422
    assert isinstance(reg.json()["detail"], list)
    assert {tuple(e["loc"]) for e in reg.json()["detail"]} == {("body", "integration_type"), ("body", "datasource_id")}
    ok = api.post(
        "/api/v1/integrations/register",
        headers=admin(mcp_sim, "acme"),
        json={"integration_type": "adp", "datasource_id": f"ds-{uuid.uuid4()}"},
    )
    iid = ok.json()["integration_id"]
    too_big = api.get(
        f"/api/v1/integrations/{iid}/data",
        headers=admin(mcp_sim, "acme"),
        params={"entity_type": "employees", "limit": 5000},
    )
    assert too_big.status_code == 422 and isinstance(too_big.json()["detail"], list)
    wrong = api.get(
        f"/api/v1/integrations/{iid}/data", headers=admin(mcp_sim, "acme"), params={"entity_type": "financials"}
    )
    assert wrong.status_code == 422
    bad_cursor = api.get(
        f"/api/v1/integrations/{iid}/data",
        headers=admin(mcp_sim, "acme"),
        params={"entity_type": "employees", "cursor": "xx"},
    )
    assert bad_cursor.status_code == 400


def test_tenants_are_public_and_validated(api) -> None:
    code = f"t-{uuid.uuid4().hex[:6]}"
    created = api.post("/api/v1/tenants/", json={"tenant_code": code, "tenant_name": "T"})
    assert created.status_code == 201
    assert set(created.json()) >= {"tenant_code", "tenant_name", "industry", "products", "settings"}
    assert api.post("/api/v1/tenants/", json={"tenant_code": code, "tenant_name": "T"}).status_code == 409
    assert api.post("/api/v1/tenants/", json={"tenant_code": "Bad_Code", "tenant_name": "T"}).status_code == 422
    assert api.get(f"/api/v1/tenants/{code}").json()["tenant_code"] == code
    assert api.get("/api/v1/tenants/nope").status_code == 404


def test_write_back_needs_an_idempotency_key(api, mcp_sim) -> None:
    body = {"entity_type": "employees", "entity_id": "E00001", "changes": {"JOB_TITLE": "x"}, "reason": "r"}
    response = api.post("/api/v1/integrations/adp/update", headers=admin(mcp_sim, "default"), json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "Idempotency-Key header required"}
    unknown = api.post(
        "/api/v1/integrations/sap/update", headers=admin(mcp_sim, "default") | {"Idempotency-Key": "k"}, json=body
    )
    assert unknown.status_code == 404


def test_lost_response_applies_then_drops_the_connection(api, mcp_sim) -> None:
    tenant = mcp_sim.new_tenant()
    mcp_sim.add_fault("lost_response", "/api/v1/integrations/{integration_type}/update", method="POST", count=1)
    body = {"entity_type": "employees", "entity_id": "E00001", "changes": {"JOB_TITLE": "Lead"}, "reason": "r"}
    headers = admin(mcp_sim, tenant) | {"Idempotency-Key": "lost-1"}
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/api/v1/integrations/adp/update", headers=headers, json=body)
    changes = api.get("/api/v1/integrations/adp/changes", headers=admin(mcp_sim, tenant)).json()
    assert [c["idempotency_key"] for c in changes] == ["lost-1"]  # applied although no response came
    again = api.post("/api/v1/integrations/adp/update", headers=headers, json=body)
    assert again.status_code == 200 and again.json()["change_id"] == changes[0]["change_id"]


def test_faults_by_count_and_ratio_and_counters(api, mcp_sim) -> None:
    mcp_sim.reset_counters()
    mcp_sim.add_fault("503", "/health", count=2)
    assert [api.get("/health").status_code for _ in range(3)] == [503, 503, 200]
    mcp_sim.clear_faults()
    mcp_sim.add_fault("429", "/health", method="GET", ratio=0.5, retry_after=3)
    answers = [api.get("/health") for _ in range(200)]
    limited = [r for r in answers if r.status_code == 429]
    assert 60 < len(limited) < 140
    assert limited[0].headers["Retry-After"] == "3"
    assert limited[0].json() == {"detail": "Too Many Requests (injected fault)"}
    assert mcp_sim.counters() == {"GET /health": 203}
    [fault] = mcp_sim.admin("GET", "/__admin/faults")["faults"]
    assert fault["fired"] == len(limited)
    mcp_sim.admin("DELETE", f"/__admin/faults/{fault['id']}")
    assert mcp_sim.admin("GET", "/__admin/faults") == {"faults": []}
    mcp_sim.reset_counters()
    assert mcp_sim.counters() == {}


def test_error_action_and_a_list_of_rules(api, mcp_sim) -> None:
    rules = mcp_sim.admin(
        "POST",
        "/__admin/faults",
        [{"action": "error", "status": 502, "path": "/health", "count": 1}, {"action": "503", "path": "/nowhere"}],
    )
    assert [r["action"] for r in rules] == ["error", "503"]
    assert api.get("/health").status_code == 502
    assert api.get("/health").status_code == 200


def test_counters_are_per_route_template(api, mcp_sim) -> None:
    mcp_sim.reset_counters()
    for code in ("acme", "default"):
        api.get(f"/api/v1/tenants/{code}")
    counters = mcp_sim.admin("GET", "/__admin/counters?prefix=/api/v1/tenants")
    assert counters == {"counters": {"GET /api/v1/tenants/{tenant_code}": 2}, "total": 2}


def test_control_endpoints_need_the_admin_key(api, mcp_sim) -> None:
    assert api.get("/__admin/faults").status_code == 401
    tenant_key = mcp_sim.tenant_key("acme")
    assert api.post("/__admin/tick", json={}, headers={"Authorization": f"Bearer {tenant_key}"}).status_code == 403
    assert api.post("/__admin/sink/anyone", content=b"{}").status_code == 200  # the receiver is open


def test_faults_match_method(api, mcp_sim) -> None:
    mcp_sim.add_fault("503", "/health", method="POST")
    assert api.get("/health").status_code == 200


async def test_webhook_headers_and_signature(mcp_sim) -> None:
    tenant = mcp_sim.new_tenant()
    sink = uuid.uuid4().hex
    secret = "s3cret-value"
    async with httpx.AsyncClient(base_url=mcp_sim.base_url) as http:
        hook = await http.post(
            "/api/v1/webhooks",
            headers=admin(mcp_sim, tenant),
            json={"url": f"{mcp_sim.base_url}/__admin/sink/{sink}", "secret": secret},
        )
        assert hook.status_code == 201 and hook.json()["events"] == ["sync.completed", "data.changed"]
        sync = await http.post(
            "/api/v1/sync/run", headers=admin(mcp_sim, tenant), json={"integration_type": "netsuite"}
        )
        assert sync.json()["records_processed"] > 0
        for _ in range(200):
            got = (await http.get(f"/__admin/sink/{sink}")).json()
            if got:
                break
            await asyncio.sleep(0.02)
    [delivery] = got
    h = delivery["headers"]
    expected = hmac.new(secret.encode(), f"{h['x-mcp-timestamp']}.{delivery['body']}".encode(), hashlib.sha256)
    assert h["x-mcp-signature"] == "sha256=" + expected.hexdigest()
    assert h["x-mcp-event"] == "sync.completed"
    assert f'"sync_id":"{sync.json()["sync_id"]}"' in delivery["body"]


def test_empty_page_and_duplicate_record_faults(api, mcp_sim) -> None:
    tenant = mcp_sim.new_tenant()
    headers = admin(mcp_sim, tenant)
    registered = api.post(
        "/api/v1/integrations/register", json={"integration_type": "adp", "datasource_id": "ds-1"}, headers=headers
    )
    data_path = f"/api/v1/integrations/{registered.json()['integration_id']}/data"
    params = {"entity_type": "employees", "limit": 3}
    normal = api.get(data_path, params=params, headers=headers).json()
    assert len(normal["data"]) == 3 and normal["next_cursor"]

    mcp_sim.add_fault("empty_page", "/api/v1/integrations/*/data", count=1)
    assert api.get(data_path, params=params, headers=headers).json() == {"data": [], "next_cursor": None}
    mcp_sim.add_fault("duplicate_record", "/api/v1/integrations/{integration_id}/data", count=1)
    doubled = api.get(data_path, params=params, headers=headers).json()
    assert doubled["data"] == [*normal["data"], normal["data"][0]]
    assert doubled["next_cursor"] == normal["next_cursor"]
    assert api.get(data_path, params=params, headers=headers).json() == normal  # both rules are used up


def test_keys_listed_and_revoked_and_integrations_deregistered_over_http(api, mcp_sim) -> None:
    code = f"kr-{uuid.uuid4().hex[:6]}"
    assert api.post("/api/v1/tenants/", json={"tenant_code": code, "tenant_name": "Key rotation"}).status_code == 201
    minted = api.post(f"/api/v1/tenants/{code}/api-keys", headers=admin(mcp_sim)).json()
    tenant = {"Authorization": f"Bearer {minted['api_key']}"}
    reg = api.post(
        "/api/v1/integrations/register", json={"integration_type": "adp", "datasource_id": "d"}, headers=tenant
    )
    listed = api.get(f"/api/v1/tenants/{code}/api-keys", headers=admin(mcp_sim))
    assert [k["key_id"] for k in listed.json()] == [minted["key_id"]] and "api_key" not in listed.json()[0]
    assert api.get(f"/api/v1/tenants/{code}/api-keys", headers=tenant).status_code == 403  # admin key only
    assert api.delete(f"/api/v1/integrations/{reg.json()['integration_id']}", headers=tenant).status_code == 204
    assert api.get("/api/v1/integrations/status", headers=tenant).json() == []
    assert api.delete(f"/api/v1/integrations/{reg.json()['integration_id']}", headers=tenant).status_code == 404
    revoked = api.delete(f"/api/v1/tenants/{code}/api-keys/{minted['key_id']}", headers=admin(mcp_sim))
    assert revoked.status_code == 204
    refused = api.get("/api/v1/integrations/status", headers=tenant)
    assert refused.status_code == 403 and refused.json()["detail"] == "Invalid or expired API key"
