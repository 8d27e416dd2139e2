"""The tenant lifecycle in ingest, on real Kafka and PostgreSQL, the local workspace and the MCP simulator:
a data source updated (one job reset requested, nothing else written) or removed (job delete requested, MCP
integration gone, landing files deleted, tables dropped on request), a tenant offboarded (no trace left in the
workspace or the simulator; another tenant untouched). The jobs service's side has its own tests."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import httpx
import pytest
from databricks.sdk.errors import NotFound
from databricks.sdk.service import sql

from apev_contracts import DatasourceRemoved, DatasourceUpdated, TenantOffboarded, naming
from apev_contracts.envelope import CloudEvent, new_event

from .conftest import Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

U, V = "life-u", "life-v"
EARLY = {"quartz_cron_expression": "0 30 5 * * ?", "timezone_id": "Europe/Paris"}


def _event(payload: Any) -> CloudEvent[Any]:
    return new_event(payload, tenant_id=payload.tenant_id, source="tests/lifecycle")


def _status(stack: Stack, key: str) -> httpx.Response:
    return httpx.get(
        f"{stack.mcp.base_url}/api/v1/integrations/status", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def _sql(stack: Stack, statement: str) -> None:
    w = stack.w
    wid = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wid, wait_timeout="50s")
    assert done.status is not None and done.status.state == sql.StatementState.SUCCEEDED, done.status


def _files(stack: Stack, folder: str) -> list[str]:
    try:
        return [str(e.path) for e in stack.w.files.list_directory_contents(folder)]
    except NotFound:
        return []


def _pipeline_key(stack: Stack, tenant: str) -> str:
    value = stack.w.secrets.get_secret(scope=naming.secret_scope(tenant), key="mcp_api_key").value or ""
    return base64.b64decode(value).decode()


@pytest.fixture(scope="module")
async def tenants(stack: Stack) -> dict[str, Any]:
    """U with two ADP data sources, V with one; the first job request of each seen (no jobs service here)."""
    codes = {U: stack.mcp.new_tenant("lu"), V: stack.mcp.new_tenant("lv")}
    created = [
        stack.created(U, "adp-1", "adp", ["employees", "payroll_runs"], codes[U]),
        stack.created(U, "adp-2", "adp", ["employees"], codes[U]),
        stack.created(V, "adp-1", "adp", ["employees"], codes[V]),
    ]
    await stack.send(*created)
    for e in created:
        await stack.wait_requests(e.data.tenant_id, e.data.datasource_id, 1)
    return {"codes": codes, "keys": {t: _pipeline_key(stack, t) for t in (U, V)}}


async def test_a_new_schedule_asks_for_one_job_reset_and_writes_nothing_else(
    stack: Stack, tenants: dict[str, Any]
) -> None:
    before = len(stack.requests_for(U, "adp-1"))
    integrations = _status(stack, tenants["keys"][U]).json()
    stack.ws.reset_counters()
    updated = _event(DatasourceUpdated(tenant_id=U, datasource_id="adp-1", schedule=EARLY))
    await stack.send(updated, updated)  # delivered twice
    (*_, reset) = await stack.wait_requests(U, "adp-1", before + 1)
    await asyncio.sleep(1.5)
    assert len(stack.requests_for(U, "adp-1")) == before + 1  # once
    assert reset.data.action is None and reset.data.job is not None
    assert reset.data.job.schedule is not None
    assert reset.data.job.schedule.quartz_cron_expression == EARLY["quartz_cron_expression"]
    assert reset.data.job_name == naming.job_name(U, "ingest", "adp-1")
    assert reset.correlationid == updated.correlationid
    assert stack.writes() == {}  # same entities: no task file, grant, secret or catalog touched
    assert _status(stack, tenants["keys"][U]).json() == integrations


async def test_removing_a_data_source_leaves_no_job_no_integration_no_landing_files(
    stack: Stack, tenants: dict[str, Any]
) -> None:
    cat = naming.catalog_name(U)
    landing = f"/Volumes/{cat}/bronze/landing"
    w = stack.w
    for ds in ("adp-1", "adp-2"):
        w.files.upload(f"{landing}/{ds}/employees/page-0001.ndjson", io.BytesIO(b'{"EMPLOYEE_ID": "E1"}\n'))
    _sql(stack, f"CREATE TABLE IF NOT EXISTS {cat}.bronze.payroll_runs (PAYROLL_RUN_ID STRING)")
    _sql(stack, f"CREATE TABLE IF NOT EXISTS {cat}.silver.payroll_runs (payroll_run_id STRING)")
    assert _files(stack, f"{landing}/adp-1/employees") == [f"{landing}/adp-1/employees/page-0001.ndjson"]
    assert len(_status(stack, tenants["keys"][U]).json()) == 2
    before = len(stack.requests_for(U, "adp-1"))
    removed = _event(DatasourceRemoved(tenant_id=U, datasource_id="adp-1", drop_tables=True))
    await stack.send(removed)
    (*_, delete) = await stack.wait_requests(U, "adp-1", before + 1)
    assert delete.data.action is not None and delete.data.action.type == "delete" and delete.data.job is None
    await stack.handled(removed.id)
    assert [i["extra_data"]["datasource_id"] for i in _status(stack, tenants["keys"][U]).json()] == ["adp-2"]
    assert _files(stack, f"{landing}/adp-1") == []
    assert _files(stack, f"{landing}/adp-2/employees") == [f"{landing}/adp-2/employees/page-0001.ndjson"]
    tables = {t.full_name for layer in ("bronze", "silver") for t in w.tables.list(catalog_name=cat, schema_name=layer)}
    assert f"{cat}.bronze.payroll_runs" not in tables and f"{cat}.silver.payroll_runs" not in tables
    assert await stack.datasource(U, "adp-1") is None and await stack.datasource(U, "adp-2") is not None

    stack.ws.reset_counters()
    again = _event(DatasourceRemoved(tenant_id=U, datasource_id="adp-1", drop_tables=True))  # a second request
    await stack.send(removed, again)
    await stack.handled(again.id)
    await asyncio.sleep(1.0)
    assert stack.writes() == {} and len(stack.requests_for(U, "adp-1")) == before + 1


async def test_offboarding_removes_every_trace_of_the_tenant_and_nothing_of_another(
    stack: Stack, tenants: dict[str, Any]
) -> None:
    w = stack.w
    key_u, key_v = tenants["keys"][U], tenants["keys"][V]
    admin = {"Authorization": f"Bearer {stack.mcp.admin_key}", "X-Tenant-ID": tenants["codes"][U]}
    assert _status(stack, key_u).status_code == 200
    assert httpx.get(f"{stack.mcp.base_url}/api/v1/webhooks", headers=admin, timeout=10).json() != []
    assert w.catalogs.get(naming.catalog_name(U)).name == naming.catalog_name(U)
    offboarded = _event(TenantOffboarded(tenant_id=U, reason="contract ended"))
    await stack.send(offboarded)
    await stack.handled(offboarded.id)
    with pytest.raises(NotFound):
        w.catalogs.get(naming.catalog_name(U))
    assert naming.secret_scope(U) not in {s.name for s in w.secrets.list_scopes()}
    for group in naming.role_groups(U).values():
        assert list(w.groups.list(filter=f'displayName eq "{group}"')) == []
    for sp in (naming.pipeline_principal(U), naming.reader_principal(U)):
        assert list(w.service_principals.list(filter=f'displayName eq "{sp}"')) == []
    refused = _status(stack, key_u)
    assert refused.status_code == 403 and refused.json()["detail"] == "Invalid or expired API key"
    assert httpx.get(f"{stack.mcp.base_url}/api/v1/integrations/status", headers=admin, timeout=10).json() == []
    listed = httpx.get(f"{stack.mcp.base_url}/api/v1/tenants/{tenants['codes'][U]}/api-keys", headers=admin, timeout=10)
    assert listed.json() == []
    hooks = httpx.get(f"{stack.mcp.base_url}/api/v1/webhooks", headers=admin, timeout=10).json()
    assert hooks == []
    assert await stack.datasource(U, "adp-2") is None
    # V is untouched: catalog, scope, principals, its key and its integration
    assert w.catalogs.get(naming.catalog_name(V)).name == naming.catalog_name(V)
    assert _pipeline_key(stack, V) == key_v
    assert [i["integration_type"] for i in _status(stack, key_v).json()] == ["adp"]
    assert list(w.service_principals.list(filter=f'displayName eq "{naming.pipeline_principal(V)}"'))
    assert await stack.datasource(V, "adp-1") is not None

    stack.ws.reset_counters()
    await stack.send(offboarded)  # replayed: nothing to do
    await asyncio.sleep(1.0)
    assert stack.writes() == {}
