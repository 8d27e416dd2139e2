"""The tenant lifecycle in ingest, on real Kafka and PostgreSQL, the local workspace and the MCP simulator:
a data source updated (one job reset requested, nothing else written) or removed (job delete requested, MCP
integration gone, landing files deleted, tables dropped on request), a tenant offboarded (no trace left in the
workspace or the simulator; another tenant untouched). The jobs service's side has its own tests."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from typing import Any

import httpx
import pytest
from databricks.sdk.errors import NotFound
from databricks.sdk.service import sql
from databricks.sdk.service.catalog import VolumeType
from sqlalchemy import select

from apev_contracts import DatasourceRemoved, DatasourceUpdated, ErasureRequested, TenantOffboarded, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_ingest import tables

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
    tenant_files = f"{stack.settings.pipeline_root}/tenants/{U}"
    assert _objects(stack, f"{tenant_files}/adp-1") == []  # its rendered task files
    assert _objects(stack, f"{tenant_files}/adp-2") != []

    stack.ws.reset_counters()
    again = _event(DatasourceRemoved(tenant_id=U, datasource_id="adp-1", drop_tables=True))  # a second request
    await stack.send(removed, again)
    await stack.handled(again.id)
    await asyncio.sleep(1.0)
    assert stack.writes() == {} and len(stack.requests_for(U, "adp-1")) == before + 1


ARCHIVE = "/Volumes/archive_ops/exports/offboarded"


def _objects(stack: Stack, folder: str) -> list[str]:
    try:
        return sorted(str(o.path) for o in stack.w.workspace.list(folder, recursive=True))
    except NotFound:
        return []


def _client_secret(stack: Stack, tenant: str) -> tuple[str, str]:
    got = [stack.w.secrets.get_secret(scope=naming.secret_scope(tenant), key=k).value or ""
           for k in ("databricks_client_id", "databricks_client_secret")]  # fmt: skip
    return base64.b64decode(got[0]).decode(), base64.b64decode(got[1]).decode()


def _m2m(stack: Stack, client: tuple[str, str]) -> httpx.Response:
    """The token endpoint's answer for this OAuth client (id, secret): a token, or 401 invalid_client."""
    data = {"grant_type": "client_credentials", "scope": "all-apis"}
    return httpx.post(f"{stack.ws.host}/oidc/v1/token", data=data, auth=client, timeout=10)


def _mcp(stack: Stack, code: str, path: str) -> Any:
    admin = {"Authorization": f"Bearer {stack.mcp.admin_key}", "X-Tenant-ID": code}
    return httpx.get(f"{stack.mcp.base_url}{path}", headers=admin, timeout=10).json()


def _traces(stack: Stack, tenant: str, code: str, app_ids: set[str]) -> dict[str, list[str]]:
    """Everything in the workspace and the simulator that belongs to `tenant`, by kind (the jobs and their
    scheduled runs are the jobs service's: services/jobs/tests/test_lifecycle.py)."""
    w = stack.w
    groups = set(naming.role_groups(tenant).values())
    sps = {naming.pipeline_principal(tenant), naming.reader_principal(tenant)}
    wid = str(next(iter(w.warehouses.list())).id)
    acl = w.warehouses.get_permissions(wid).access_control_list or []
    return {
        "catalog": [str(c.name) for c in w.catalogs.list() if c.name == naming.catalog_name(tenant)],
        "secret_scope": [str(x.name) for x in w.secrets.list_scopes() if x.name == naming.secret_scope(tenant)],
        "groups": [str(g.display_name) for g in w.groups.list() if g.display_name in groups],
        "service_principals": [str(x.display_name) for x in w.service_principals.list() if x.display_name in sps],
        "warehouse_grants": [
            str(a.group_name or a.service_principal_name)
            for a in acl
            if a.group_name in groups or a.service_principal_name in app_ids
        ],
        "task_files": _objects(stack, f"{stack.settings.pipeline_root}/tenants/{tenant}"),
        "mcp_integrations": [
            str(i["extra_data"]["integration_id"]) for i in _mcp(stack, code, "/api/v1/integrations/status")
        ],
        "mcp_keys": [k["key_id"] for k in _mcp(stack, code, f"/api/v1/tenants/{code}/api-keys")],
        "mcp_webhooks": [str(h.get("id")) for h in _mcp(stack, code, "/api/v1/webhooks")],
    }


async def test_offboarding_exports_gold_then_removes_every_trace_of_the_tenant_and_nothing_of_another(
    stack: Stack, tenants: dict[str, Any]
) -> None:
    w = stack.w
    code_u, code_v = tenants["codes"][U], tenants["codes"][V]
    key_u, key_v = tenants["keys"][U], tenants["keys"][V]
    cat = naming.catalog_name(U)
    _sql(stack, f"CREATE TABLE {cat}.gold.monthly_kpis (practice_location STRING, revenue DECIMAL(12,2))")
    _sql(stack, f"INSERT INTO {cat}.gold.monthly_kpis VALUES ('eastlake_001', 1200.50), ('westside_002', 99.00)")
    w.catalogs.create(name="archive_ops")  # the operator's archive, outside every tenant catalog
    w.schemas.create(name="exports", catalog_name="archive_ops")
    w.volumes.create(catalog_name="archive_ops", schema_name="exports", name="offboarded",
                     volume_type=VolumeType.MANAGED)  # fmt: skip
    client_u, client_v = _client_secret(stack, U), _client_secret(stack, V)
    assert _m2m(stack, client_u).status_code == 200
    app_ids = {str(x.application_id) for x in w.service_principals.list() if x.display_name in
               (naming.pipeline_principal(U), naming.reader_principal(U))}  # fmt: skip
    before = _traces(stack, U, code_u, app_ids)
    assert all(before.values()), before  # every kind is there to be removed
    async with stack.http(U, ("engineer",)) as http:
        assert (await http.post(f"/api/v1/tenants/{U}/offboarding")).status_code == 403
    async with stack.http(V, ("admin",)) as http:  # another tenant's admin
        assert (await http.post(f"/api/v1/tenants/{U}/offboarding")).status_code == 403
    # V's pipeline principal at work (sign-ins with its OAuth secret, statements on the shared warehouse)
    # across U's offboarding, which rewrites the warehouse's ACL
    from databricks.sdk.service import jobs

    from apev_workspace.testing import wait_run

    (sp_v,) = list(w.service_principals.list(filter=f'displayName eq "{naming.pipeline_principal(V)}"'))
    wid = str(next(iter(w.warehouses.list())).id)
    v_run = w.jobs.run_now(job_id=_probe_job(stack, V, str(sp_v.application_id), 8.0, wid)).run_id
    assert v_run is not None
    await _signed_in(stack, stack.ws.counters("/oidc/v1/token").get("POST /oidc/v1/token", 0))
    async with stack.http(U, ("admin",)) as http:
        for bad in (f"/Volumes/{cat}/bronze/landing", "/Volumes/archive_ops/exports/nope", "/tmp/x"):
            refused = await http.post(f"/api/v1/tenants/{U}/offboarding", json={"export_volume": bad})
            assert refused.status_code == 422, (bad, refused.text)
        asked = await http.post(f"/api/v1/tenants/{U}/offboarding", json={"export_volume": ARCHIVE})
        assert asked.status_code == 202, asked.text
        await stack.handled(asked.json()["request_id"])
        progress = (await http.get(asked.json()["progress"])).json()
    assert progress["state"] == "done"
    assert [s["step"] for s in progress["steps"]] == [
        "exported", "mcp_deregistered", "mcp_webhook_removed", "mcp_keys_revoked", "catalog_dropped",
        "secret_scope_deleted", "warehouse_grants_revoked", "principals_removed", "task_files_deleted", "offboarded",
    ]  # fmt: skip
    # the export, read back from the archive volume after the catalog is gone
    exported = f"{ARCHIVE}/{cat}"
    assert progress["steps"][0]["detail"] == {"destination": exported, "tables": {f"{cat}.gold.monthly_kpis": 2}}
    body = w.files.download(f"{exported}/gold/monthly_kpis.json").contents.read()  # type: ignore[union-attr]
    assert [json.loads(line) for line in body.decode().splitlines()] == [
        {"practice_location": "eastlake_001", "revenue": "1200.50"},
        {"practice_location": "westside_002", "revenue": "99.00"},
    ]
    manifest = json.loads(w.files.download(f"{exported}/manifest.json").contents.read())  # type: ignore[union-attr]
    assert manifest["tables"][f"{cat}.gold.monthly_kpis"]["rows"] == 2
    with pytest.raises(NotFound):
        w.catalogs.get(cat)
    after = _traces(stack, U, code_u, app_ids)
    assert after == {kind: [] for kind in before}, after
    refused = _status(stack, key_u)
    assert refused.status_code == 403 and refused.json()["detail"] == "Invalid or expired API key"
    assert _m2m(stack, client_u).status_code == 401  # the principal's OAuth secret signs in no more
    assert await stack.datasource(U, "adp-2") is None
    async with stack.service.db.engine.connect() as conn:
        steps = list(await conn.execute(select(tables.steps.c.scope).where(
            (tables.steps.c.scope == f"tenant:{U}") | tables.steps.c.scope.like(f"ds:{U}:%"))))  # fmt: skip
        files = list(await conn.execute(select(tables.files.c.path).where(tables.files.c.path.like(f"%/{U}/%"))))
    assert steps == [] and files == []
    # V is untouched: every trace of it, its key, its OAuth secret, its integration
    assert all(_traces(stack, V, code_v, set()).values())
    assert w.catalogs.get(naming.catalog_name(V)).name == naming.catalog_name(V)
    assert _pipeline_key(stack, V) == key_v and _client_secret(stack, V) == client_v
    assert _m2m(stack, client_v).status_code == 200
    assert [i["integration_type"] for i in _status(stack, key_v).json()] == ["adp"]
    assert await stack.datasource(V, "adp-1") is not None
    v_done = await asyncio.to_thread(wait_run, w, v_run, timeout=120)
    assert v_done.state is not None and v_done.state.result_state == jobs.RunResultState.SUCCESS, v_done.state
    v_log = w.jobs.get_run_output(int((v_done.tasks or [])[0].run_id or 0)).logs or ""
    assert v_log.count("signed in as") >= 2, v_log

    stack.ws.reset_counters()
    again = _event(TenantOffboarded(tenant_id=U, reason="asked twice"))
    await stack.send(again)
    await stack.handled(again.id)
    assert stack.writes() == {}  # nothing left to remove: no write reaches the workspace


def _count(stack: Stack, statement: str) -> int:
    w = stack.w
    wid = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wid, wait_timeout="50s")
    assert done.status is not None and done.status.state == sql.StatementState.SUCCEEDED, done.status
    return int(done.result.data_array[0][0])  # type: ignore[union-attr,index,arg-type]


async def _verified(stack: Stack, tenant: str, request_id: str) -> dict[str, Any]:
    async with stack.http(tenant, ("admin",)) as http:
        for _ in range(300):
            got = (await http.get(f"/api/v1/erasures/{request_id}")).json()
            if got.get("state") == "verified":
                return dict(got)
            await asyncio.sleep(0.1)
    raise AssertionError(got)


async def test_an_erasure_leaves_no_row_or_landing_file_with_the_person_and_says_where_it_deleted(
    stack: Stack, tenants: dict[str, Any]
) -> None:
    cat = naming.catalog_name(V)
    for statement in (
        f"CREATE TABLE {cat}.bronze.employees (EMPLOYEE_ID STRING, FIRST_NAME STRING, _source_file STRING)",
        f"INSERT INTO {cat}.bronze.employees VALUES ('E00001', 'Ada', 'p0'), ('E00002', 'Bo', 'p0')",
        f"CREATE TABLE {cat}.silver.employees (employee_id STRING, first_name STRING)",
        f"INSERT INTO {cat}.silver.employees VALUES ('E00001', 'Ada'), ('E00002', 'Bo')",
        f"CREATE TABLE {cat}.gold.agent_insights (insight_id STRING, entity_type STRING, entity_id STRING)",
        f"INSERT INTO {cat}.gold.agent_insights VALUES ('i1', 'employees', 'E00001'), ('i2', 'employees', 'E00002'),"
        " ('i3', 'locations', 'E00001')",
        f"CREATE TABLE {cat}.gold.payroll_totals (practice_location STRING, gross_pay DECIMAL(12,2))",
        f"INSERT INTO {cat}.gold.payroll_totals VALUES ('eastlake_001', 100.00)",
    ):
        _sql(stack, statement)
    run = f"/Volumes/{cat}/bronze/landing/adp-1/employees/run-1-0"
    both, other = f"{run}/part-00000.json", f"{run}/part-00001.json"
    stack.w.files.upload(both, io.BytesIO(b'{"EMPLOYEE_ID":"E00001","FIRST_NAME":"Ada"}\n{"EMPLOYEE_ID":"E00002"}\n'))
    stack.w.files.upload(other, io.BytesIO(b'{"EMPLOYEE_ID":"E00002","FIRST_NAME":"Bo"}\n'))

    async with stack.http(V, ("analyst",)) as http:
        assert (await http.post("/api/v1/erasures", json={"employee_id": "E00001"})).status_code == 403
    async with stack.http(V, ("admin",)) as http:
        asked = await http.post("/api/v1/erasures", json={"employee_id": "E00001"})
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["request_id"]
        assert asked.json()["progress"] == f"/api/v1/erasures/{request_id}"
    record = await _verified(stack, V, request_id)
    assert record["counts"] == {f"{cat}.bronze.employees": 1, f"{cat}.silver.employees": 1,
                                f"{cat}.gold.agent_insights": 1}  # fmt: skip
    assert record["files_deleted"] == [both]
    assert set(record["remaining"].values()) == {0} and "landing_files" in record["remaining"]
    assert "E00001" not in str(record) and "Ada" not in str(record)  # no personal data in the audit record
    # the proof, independently: nothing with the id anywhere, everything else still there
    assert _count(stack, f"SELECT count(*) FROM {cat}.bronze.employees WHERE EMPLOYEE_ID = 'E00001'") == 0
    assert _count(stack, f"SELECT count(*) FROM {cat}.silver.employees WHERE employee_id = 'E00001'") == 0
    assert _count(stack, f"SELECT count(*) FROM {cat}.gold.agent_insights WHERE entity_type = 'employees' "
                         "AND entity_id = 'E00001'") == 0  # fmt: skip
    assert _count(stack, f"SELECT count(*) FROM {cat}.gold.agent_insights") == 2  # i2, and i3 (a location)
    assert _count(stack, f"SELECT count(*) FROM {cat}.bronze.employees") == 1
    assert _count(stack, f"SELECT count(*) FROM {cat}.gold.payroll_totals") == 1
    landing = [p for p in _walk(stack, f"/Volumes/{cat}/bronze/landing")]
    assert both not in landing and other in landing
    for path in landing:
        assert b"E00001" not in stack.w.files.download(path).contents.read()  # type: ignore[union-attr]

    again = _event(ErasureRequested(tenant_id=V, employee_id="E00001"))  # the same person asked again
    await stack.send(again)
    replay = await _verified(stack, V, again.id)
    assert set(replay["counts"].values()) == {0} and replay["files_deleted"] == []
    assert _count(stack, f"SELECT count(*) FROM {cat}.silver.employees") == 1


def _rows(stack: Stack, statement: str) -> list[list[str | None]]:
    w = stack.w
    wid = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wid, wait_timeout="50s")
    assert done.status is not None and done.status.state == sql.StatementState.SUCCEEDED, done.status
    return [list(r) for r in (done.result.data_array or [])] if done.result else []


def _everywhere(stack: Stack, catalog: str, person: str) -> dict[str, int]:
    """Where the id appears as a whole word: every table of every schema of the catalog (every cell, as text)
    and every file of every volume; table or path -> occurrences."""
    w, word, found = stack.w, re.compile(rf"\b{re.escape(person)}\b"), {}
    for schema in w.schemas.list(catalog_name=catalog):
        for table in w.tables.list(catalog_name=catalog, schema_name=str(schema.name)):
            cells = [c for row in _rows(stack, f"SELECT * FROM {table.full_name}") for c in row]
            if hits := sum(1 for c in cells if c is not None and word.search(c)):
                found[str(table.full_name)] = hits
        for volume in w.volumes.list(catalog_name=catalog, schema_name=str(schema.name)):
            for path in _walk(stack, f"/Volumes/{catalog}/{schema.name}/{volume.name}"):
                body = w.files.download(path).contents.read().decode()  # type: ignore[union-attr]
                if hits := len(word.findall(body)):
                    found[path] = hits
    return found


def _walk(stack: Stack, folder: str) -> list[str]:
    out: list[str] = []
    for entry in stack.w.files.list_directory_contents(folder):
        out += _walk(stack, str(entry.path)) if entry.is_directory else [str(entry.path)]
    return out


PROBE = """
import os, sys, time
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

w = WorkspaceClient()
secrets = (globals().get("dbutils") or w.dbutils).secrets
scope, seconds, warehouse = sys.argv[1], float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else ""
client_id, client_secret = secrets.get(scope, "databricks_client_id"), secrets.get(scope, "databricks_client_secret")
deadline, signed_in = time.monotonic() + seconds, 0
while True:  # a fresh sign-in with the secret read at the start, every 0.5 s, as long as the run lasts
    c = WorkspaceClient(config=Config(host=os.environ["DATABRICKS_HOST"], client_id=client_id,
                                      client_secret=client_secret, auth_type="oauth-m2m"))
    me = c.current_user.me()
    if warehouse:  # and a statement on the warehouse (CAN_USE), as the tenant's SQL tasks do
        done = c.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=warehouse, wait_timeout="30s")
        assert done.status.state.value == "SUCCEEDED", done.status
    signed_in += 1
    print(f"signed in as {me.display_name} ({signed_in}) at {time.time()}", flush=True)
    if time.monotonic() > deadline:
        break
    time.sleep(0.5)
"""


async def _signed_in(stack: Stack, before: int, timeout: float = 60) -> None:
    """Until the token endpoint has answered more than `before` times (a probe has signed in)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while stack.ws.counters("/oidc/v1/token").get("POST /oidc/v1/token", 0) <= before:
        assert asyncio.get_running_loop().time() < deadline, "the probe never signed in"
        await asyncio.sleep(0.05)


def _probe_job(stack: Stack, tenant: str, app_id: str, seconds: float, warehouse: str = "") -> int:
    """A job of the tenant's pipeline principal whose task signs in with the principal's OAuth secret (read
    from the tenant's scope when it starts) again and again for `seconds`."""
    from databricks.sdk.service import jobs
    from databricks.sdk.service.workspace import ImportFormat

    w = stack.w
    path = f"/Shared/tests/{tenant}/m2m_probe.py"
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    w.workspace.import_(path=path, content=base64.b64encode(PROBE.encode()).decode(), format=ImportFormat.AUTO,
                        overwrite=True)  # fmt: skip
    task = jobs.Task(task_key="probe", spark_python_task=jobs.SparkPythonTask(
        python_file=path, parameters=[naming.secret_scope(tenant), str(seconds), warehouse]))  # fmt: skip
    made = w.jobs.create(name=f"m2m-probe-{tenant}", tasks=[task], run_as=jobs.JobRunAs(service_principal_name=app_id))
    return int(made.job_id or 0)


async def test_a_rotation_during_a_running_ingest_job_fails_no_run_and_the_old_key_is_refused_after(
    stack: Stack,
) -> None:
    from datetime import UTC, datetime, timedelta

    from databricks.sdk.service import jobs

    from apev_workspace.testing import wait_run

    from .test_ingest import create_job

    tenant, code = "life-w", stack.mcp.new_tenant("lw")
    await stack.send(stack.created(tenant, "adp-1", "adp", ["employees"], code))
    (request,) = await stack.wait_requests(tenant, "adp-1", 1)
    w = stack.w
    old_key, old_client = _pipeline_key(stack, tenant), _client_secret(stack, tenant)
    sp = next(iter(w.service_principals.list(filter=f'displayName eq "{naming.pipeline_principal(tenant)}"')))
    job_id = create_job(w, request.data, str(sp.application_id))
    probe_id = _probe_job(stack, tenant, str(sp.application_id), seconds=4.0)
    stack.mcp.add_fault("latency", "/api/v1/integrations/*/data", latency_ms=1500, count=2)  # a run that lasts
    try:
        signed_in = stack.ws.counters("/oidc/v1/token").get("POST /oidc/v1/token", 0)
        run_id, probe_run = w.jobs.run_now(job_id=job_id).run_id, w.jobs.run_now(job_id=probe_id).run_id
        assert run_id is not None and probe_run is not None
        await asyncio.to_thread(  # the service runs on this loop: wait in a thread
            wait_run,
            w,
            run_id,
            until=lambda r: any(  # the fetch task has started: it has read its key
                t.state is not None and t.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING
                for t in r.tasks or []
            ),
        )
        await _signed_in(stack, signed_in)  # the probe has read its secret
        async with stack.http(tenant, ("admin",)) as http:
            rotated = await http.post("/api/v1/credentials/rotations")  # the MCP key (the default kind)
            assert rotated.status_code == 202, rotated.text
            sp_rotated = await http.post("/api/v1/credentials/rotations", json={"kind": "sp_secret"})
            assert sp_rotated.status_code == 202, sp_rotated.text
            assert (await http.post("/api/v1/credentials/rotations", json={"kind": "pat"})).status_code == 422
            rotation, sp_rotation = rotated.json(), sp_rotated.json()
            rotated_at = datetime.now(UTC)
            listed = (await http.get("/api/v1/credentials")).json()["credentials"]
        done = await asyncio.to_thread(wait_run, w, run_id, timeout=180)
        probed = await asyncio.to_thread(wait_run, w, probe_run, timeout=180)
    finally:
        stack.mcp.clear_faults()
    assert rotation["state"] == "stored" and rotation["progress"].endswith(rotation["request_id"])
    assert (sp_rotation["kind"], sp_rotation["state"]) == ("sp_secret", "stored")
    new_key, new_client = _pipeline_key(stack, tenant), _client_secret(stack, tenant)
    assert new_key != old_key and new_key.startswith(f"{code}_sk_")
    assert new_client[0] == old_client[0] == sp.application_id and new_client[1] != old_client[1]
    mcp_keys = [c for c in listed if c["kind"] == "mcp_api_key"]
    sp_secrets = [c for c in listed if c["kind"] == "sp_secret"]
    assert [c["state"] for c in mcp_keys] == ["retiring", "active"]  # oldest first
    assert mcp_keys[1]["key_id"] == rotation["new_key_id"] and mcp_keys[0]["revoke_after"] is not None
    assert [c["state"] for c in sp_secrets] == ["retiring", "active"]
    assert sp_secrets[1]["key_id"] == sp_rotation["new_key_id"]
    assert all(c["age_days"] >= 0 and c["rotation_due"] is False for c in listed)
    for finished in (done, probed):
        assert finished.state is not None and finished.state.result_state == jobs.RunResultState.SUCCESS, finished.state
        assert datetime.fromtimestamp((finished.end_time or 0) / 1000, UTC) > rotated_at  # ran across it
    output = w.jobs.get_run_output(int((probed.tasks or [])[0].run_id or 0)).logs or ""
    times = [float(line.rsplit(" at ", 1)[1]) for line in output.splitlines() if line.startswith("signed in as")]
    assert max(times) > rotated_at.timestamp(), output  # it signed in with the old secret after the rotation
    assert _status(stack, old_key).status_code == 200  # still in its grace period
    assert _m2m(stack, old_client).status_code == 200

    later = datetime.now(UTC) + timedelta(seconds=stack.settings.credential_grace_seconds + 1)
    assert await stack.service.rotation.advance(rotation["request_id"], later) == "done"
    assert await stack.service.rotation.advance(sp_rotation["request_id"], later) == "done"
    refused = _status(stack, old_key)
    assert refused.status_code == 403 and refused.json()["detail"] == "Invalid or expired API key"
    assert _status(stack, new_key).status_code == 200
    assert _m2m(stack, old_client).status_code == 401 and _m2m(stack, old_client).json()["error"] == "invalid_client"
    assert _m2m(stack, new_client).status_code == 200
    async with stack.http(tenant, ("admin",)) as http:
        progress = (await http.get(rotation["progress"])).json()
        sp_progress = (await http.get(sp_rotation["progress"])).json()
        listed = (await http.get("/api/v1/credentials")).json()["credentials"]
    async with stack.http(tenant, ("analyst",)) as http:
        assert (await http.get("/api/v1/credentials")).status_code == 403
    assert progress["state"] == "done" and progress["old_key_ids"]
    assert sp_progress["state"] == "done" and sp_progress["old_key_ids"]
    assert sorted(c["key_id"] for c in listed) == sorted([rotation["new_key_id"], sp_rotation["new_key_id"]])
    # by age: a credential older than the configured maximum (90 days by default) is listed as due
    due = await stack.service.rotation.credentials(tenant, later + timedelta(days=91))
    assert sorted((c["kind"], c["rotation_due"]) for c in due) == [("mcp_api_key", True), ("sp_secret", True)]
    # and the credentials loop rotates both at that age (and every other tenant's, as old by then)
    assert (await stack.service.rotation.check(later + timedelta(days=91)))["started"] >= 2
    assert _pipeline_key(stack, tenant) != new_key and _client_secret(stack, tenant)[1] != new_client[1]


async def test_the_operator_cli_asks_for_rotation_erasure_and_offboarding_and_reads_their_progress(
    stack: Stack, tenants: dict[str, Any], tmp_path: Any
) -> None:
    """`apev credentials|erasure|tenant ...` against the running ingest service (INGEST_URL, APEV_JWT_SECRET),
    in a worker thread: the service answers on this test's event loop."""
    from typer.testing import CliRunner

    from apev_stack.cli import app

    from .conftest import JWT_SECRET

    env = {"INGEST_URL": stack.base_url, "APEV_JWT_SECRET": JWT_SECRET, "APEV_STATE_DIR": str(tmp_path)}

    async def apev(*args: str, code: int = 0, **kw: Any) -> Any:
        done = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env, **kw)
        assert done.exit_code == code, (args, done.output)
        wants_json = code == 0 and ("--json" in args or args[-1] == "--wait")
        return json.loads(done.output) if wants_json else done.output

    for command in ("tenant offboard", "tenant status", "erasure request", "erasure status", "credentials list",
                    "credentials rotate", "credentials status"):  # fmt: skip
        assert "Usage:" in await apev(*command.split(), "--help")
    tenant = "life-w"
    listed = await apev("credentials", "list", "-t", tenant, "--json")
    assert sorted(c["kind"] for c in listed) == ["mcp_api_key", "mcp_api_key", "sp_secret", "sp_secret"]
    assert f"credentials of {tenant}: 4" in await apev("credentials", "list", "-t", tenant)  # the table
    rotated = json.loads(await apev("credentials", "rotate", "-t", tenant, "--kind", "sp_secret"))
    assert [(r["kind"], r["state"]) for r in rotated] == [("sp_secret", "stored")]
    status = json.loads(await apev("credentials", "status", rotated[0]["request_id"], "-t", tenant))
    assert status["state"] == "stored" and status["new_key_id"] == rotated[0]["new_key_id"]
    assert "404" in await apev("credentials", "status", rotated[0]["request_id"], "-t", V, code=1)  # not V's

    # a real person of W's real ingest run (the rotation test's): after the erasure, no cell of any table in the
    # catalog and no landing file holds the id, whatever table or column the erasure code knows of
    cat = naming.catalog_name(tenant)
    person = str(_rows(stack, f"SELECT employee_id FROM {cat}.silver.employees ORDER BY employee_id LIMIT 1")[0][0])
    assert _everywhere(stack, cat, person) != {}  # it is there to be found before
    record = await apev("erasure", "request", tenant, person, "--wait")
    assert record["state"] == "verified" and record["counts"][f"{cat}.silver.employees"] == 1
    assert record["counts"][f"{cat}.bronze.employees"] >= 1 and record["files_deleted"]
    assert person not in json.dumps(record)
    assert json.loads(await apev("erasure", "status", record["request_id"], "-t", tenant))["state"] == "verified"
    assert _everywhere(stack, cat, person) == {}
    replay = await apev("erasure", "request", tenant, person, "--wait")  # asked again: nothing more to delete
    assert set(replay["counts"].values()) == {0} and replay["files_deleted"] == []
    assert _rows(stack, f"SELECT count(*) FROM {cat}.silver.employees")[0][0] != "0"  # the others stay

    assert "not confirmed" in await apev("tenant", "offboard", tenant, code=1, input="n\n")
    assert "422" in await apev("tenant", "offboard", tenant, "--yes", "--export-volume", "/Volumes/nope/a/b", code=1)
    done = await apev("tenant", "offboard", tenant, "--yes", "--wait")
    assert done["state"] == "done" and done["steps"][-1]["step"] == "offboarded"
    again = json.loads(await apev("tenant", "status", tenant, done["request_id"]))
    assert again["state"] == "done" and again["request_id"] == done["request_id"]
    with pytest.raises(NotFound):
        stack.w.catalogs.get(naming.catalog_name(tenant))

    no_stack = await asyncio.to_thread(
        CliRunner().invoke, app, ["credentials", "list", "-t", tenant], env={**env, "INGEST_URL": ""}
    )
    assert no_stack.exit_code == 2 and "INGEST_URL" in no_stack.output
