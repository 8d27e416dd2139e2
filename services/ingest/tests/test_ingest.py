"""The ingest service on real Kafka and PostgreSQL, the local workspace and the MCP simulator.

Tenants A (ADP) and B (NetSuite) are provisioned once for the module; every figure in gold is computed here
from the simulator's own records. The jobs service is not on main yet: the job the requested spec describes
is created and run here through the SDK, as the jobs service would, and its `run.finished` published here.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from base64 import b64decode
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service import catalog, iam, jobs, sql

from apev_contracts import JobRequested, RunFinished, naming
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.ids import run_finished_id
from apev_runtime.mcp import signed_headers
from apev_workspace.testing import wait_run

from .conftest import HOOK_SECRET, Stack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

A, B = "tenant-a", "tenant-b"


def _rows(w: WorkspaceClient, statement: str) -> list[list[str | None]]:
    done = _query(w, statement)
    assert done.status.state == sql.StatementState.SUCCEEDED, (statement, done.status.error)
    return (done.result.data_array or []) if done.result else []


def _query(w: WorkspaceClient, statement: str) -> sql.StatementResponse:
    wid = str(next(iter(w.warehouses.list())).id)
    return w.statement_execution.execute_statement(statement=statement, warehouse_id=wid, wait_timeout="50s")


def _refused(w: WorkspaceClient, statement: str) -> bool:
    try:
        done = _query(w, statement)
    except PermissionDenied:
        return True
    return done.status.state == sql.StatementState.FAILED and "INSUFFICIENT_PERMISSIONS" in str(done.status.error)


def _records(stack: Stack, code: str, entity: str) -> list[dict[str, str]]:
    key = stack.mcp.tenant_key(code)
    got = httpx.get(
        f"{stack.mcp.base_url}/api/v1/data/{entity}",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    got.raise_for_status()
    records: list[dict[str, str]] = got.json()
    assert 0 < len(records) < 1000
    return records


def _person(stack: Stack, name: str, group: str | None) -> WorkspaceClient:
    """A member of the tenant's group (people come from the identity provider, not from ingest)."""
    w = stack.w
    sp = w.service_principals.create(display_name=name)
    if group is not None:
        gid = next(iter(w.groups.list(filter=f'displayName eq "{group}"'))).id
        w.groups.patch(
            str(gid),
            operations=[iam.Patch(op=iam.PatchOp.ADD, path="members", value=[{"value": sp.id}])],
            schemas=[iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP],
        )
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=3600)
    return stack.ws.client(token=token.token_value)


def create_job(w: WorkspaceClient, request: JobRequested, run_as: str) -> int:
    """What the jobs service does with the requested spec (run_as: principal name -> application id)."""
    spec = request.job
    assert spec is not None
    tasks = []
    for t in spec.tasks:
        extra: dict[str, Any] = {}
        if t.python_task is not None:
            extra["spark_python_task"] = jobs.SparkPythonTask(
                python_file=t.python_task.python_file, parameters=list(t.python_task.parameters)
            )
        if t.sql_task is not None:
            extra["sql_task"] = jobs.SqlTask(
                file=jobs.SqlTaskFile(path=t.sql_task.file, source=jobs.Source.WORKSPACE),
                warehouse_id=t.sql_task.warehouse_id,
                parameters=dict(t.sql_task.parameters),
            )
        tasks.append(
            jobs.Task(
                task_key=t.task_key,
                depends_on=[jobs.TaskDependency(task_key=d.task_key) for d in t.depends_on] or None,
                timeout_seconds=t.timeout_seconds,
                max_retries=t.max_retries,
                **extra,
            )
        )
    created = w.jobs.create(
        name=request.job_name,
        tasks=tasks,
        tags=dict(spec.tags),
        timeout_seconds=spec.timeout_seconds,
        parameters=[jobs.JobParameterDefinition(name=p.name, default=p.default) for p in spec.parameters],
        run_as=jobs.JobRunAs(service_principal_name=run_as),
    )
    return int(created.job_id or 0)


def run_finished(run: jobs.Run, request: CloudEvent[Any], tenant: str, ds: str) -> CloudEvent[Any]:
    """The `run.finished` the jobs service would publish for this run."""
    state = run.state
    assert state is not None and run.run_id is not None
    result = state.result_state.value if state.result_state else "FAILED"
    payload = RunFinished.model_validate(
        {
            "tenant_id": tenant,
            "job_id": str(run.job_id),
            "run_id": str(run.run_id),
            "kind": "ingest",
            "key": ds,
            "job_name": naming.job_name(tenant, "ingest", ds),
            "request_id": request.id,
            "tags": naming.job_tags(tenant, "ingest", datasource_id=ds),
            "state": {"life_cycle_state": "TERMINATED", "result_state": result},
            "status": {"state": "TERMINATED"},
            "outcome": "success" if result == "SUCCESS" else "failure",
            "start_time": datetime.fromtimestamp((run.start_time or 0) / 1000, UTC),
            "end_time": datetime.fromtimestamp((run.end_time or 0) / 1000, UTC),
            "run_page_url": run.run_page_url,
        }
    )
    return new_event(payload, tenant_id=tenant, source="tests/jobs", id=run_finished_id(str(run.run_id), 0))


@pytest.fixture(scope="module")
async def world(stack: Stack) -> dict[str, Any]:
    """A (ADP) and B (NetSuite) provisioned from datasource.created, each job run once as the jobs service
    would, and its run.finished published."""
    mcp = stack.mcp
    code_a, code_b = mcp.new_tenant("ta"), mcp.new_tenant("tb")
    ev_a = stack.created(A, "adp-1", "adp", ["employees", "payroll_runs"], code_a.upper())  # matched as MCP spells it
    ev_b = stack.created(B, "ns-1", "netsuite", ["financials"], code_b)
    started = time.monotonic()
    await stack.send(ev_a, ev_b)
    req_a = (await stack.wait_requests(A, "adp-1", 1))[0]
    req_b = (await stack.wait_requests(B, "ns-1", 1))[0]
    provisioned = time.monotonic() - started
    w = stack.w
    runs = {}
    for tenant, ds, req in ((A, "adp-1", req_a), (B, "ns-1", req_b)):
        sp = next(iter(w.service_principals.list(filter=f'displayName eq "{naming.pipeline_principal(tenant)}"')))
        job_id = create_job(w, req.data, str(sp.application_id))
        runs[tenant] = (ds, req, w.jobs.run_now(job_id=job_id, job_parameters={}).run_id, job_id)
    done = {t: wait_run(w, run_id, timeout=180) for t, (_, _, run_id, _) in runs.items()}
    for tenant, (ds, req, _, _) in runs.items():
        await stack.send(run_finished(done[tenant], req, tenant, ds))
    return {
        "codes": {A: code_a, B: code_b},
        "events": {A: ev_a, B: ev_b},
        "requests": {A: req_a, B: req_b},
        "runs": done,
        "jobs": {t: r[3] for t, r in runs.items()},
        "provisioned_seconds": provisioned,
    }


async def test_each_tenant_gets_its_layout_grants_scope_and_one_job_request(
    stack: Stack, world: dict[str, Any]
) -> None:
    w = stack.w
    wid = str(next(iter(w.warehouses.list())).id)
    can_use = {
        (a.group_name or a.service_principal_name): {str(p.permission_level.value) for p in a.all_permissions or []}
        for a in w.warehouses.get_permissions(wid).access_control_list or []
    }
    for tenant, system in ((A, "adp"), (B, "netsuite")):
        cat = naming.catalog_name(tenant)
        assert {s.name for s in w.schemas.list(catalog_name=cat)} >= {"bronze", "silver", "gold"}
        assert w.volumes.read(f"{cat}.bronze.landing").volume_type == catalog.VolumeType.MANAGED
        for group in naming.role_groups(tenant).values():
            assert list(w.groups.list(filter=f'displayName eq "{group}"')), group
            assert can_use[group] == {"CAN_USE"}
        apps, sp_ids = {}, {}
        for name in (naming.pipeline_principal(tenant), naming.reader_principal(tenant)):
            (sp,) = list(w.service_principals.list(filter=f'displayName eq "{name}"'))
            apps[name], sp_ids[name] = str(sp.application_id), str(sp.id)
            assert can_use[apps[name]] == {"CAN_USE"}
        pipeline = apps[naming.pipeline_principal(tenant)]
        grants = {
            (a.principal, p.value)
            for a in w.grants.get("catalog", cat).privilege_assignments or []
            for p in a.privileges or []
        }
        assert {(pipeline, p) for p in ("USE_CATALOG", "SELECT", "MODIFY", "CREATE_TABLE", "CREATE_FUNCTION")} <= grants
        assert (naming.admins_group(tenant), "ALL_PRIVILEGES") in grants
        bronze = {
            (a.principal, p.value)
            for a in w.grants.get("schema", f"{cat}.bronze").privilege_assignments or []
            for p in a.privileges or []
        }
        assert (naming.engineers_group(tenant), "MODIFY") in bronze
        assert (naming.engineers_group(tenant), "SELECT") not in bronze  # raw PII
        scope = naming.secret_scope(tenant)
        keys = {s.key for s in w.secrets.list_secrets(scope=scope)}
        assert keys == {"mcp_api_key", "mcp_base_url", "databricks_client_id", "databricks_client_secret"}
        client_id = w.secrets.get_secret(scope=scope, key="databricks_client_id").value or ""
        assert b64decode(client_id).decode() == pipeline  # the pipeline principal's OAuth secret: M2M as it
        pipeline_sp = sp_ids[naming.pipeline_principal(tenant)]
        (secret,) = w.service_principal_secrets_proxy.list(service_principal_id=pipeline_sp)
        assert secret.status == "ACTIVE"
        acls = {a.principal: a.permission.value for a in w.secrets.list_acls(scope=scope) if a.permission}
        assert acls == {"admin@apev.local": "MANAGE", pipeline: "READ"}
        key = w.secrets.get_secret(scope=scope, key="mcp_api_key").value or ""
        import base64

        code = world["codes"][tenant]
        assert base64.b64decode(key).decode().startswith(f"{code}_sk_")
        integrations = httpx.get(
            f"{stack.mcp.base_url}/api/v1/integrations/status",
            headers={"Authorization": f"Bearer {stack.mcp.tenant_key(code)}"},
            timeout=10,
        ).json()
        assert [i["integration_type"] for i in integrations] == [system]
        (request,) = stack.requests_for(tenant, "adp-1" if tenant == A else "ns-1")
        assert request.data.action.type == "run" and request.data.job is not None
        assert request.data.job_name == naming.job_name(tenant, "ingest", request.data.key)
        assert request.correlationid == world["events"][tenant].correlationid


async def test_the_same_event_again_changes_nothing_and_publishes_nothing(stack: Stack, world: dict[str, Any]) -> None:
    stack.ws.reset_counters()
    before = len(stack.requested)
    again = world["events"][A]
    copy = stack.created(A, "adp-1", "adp", ["employees", "payroll_runs"], world["codes"][A])  # a new event id
    await stack.send(again, world["events"][B], copy)
    await stack.handled(copy.id)
    await asyncio.sleep(1.0)  # the relay would have published by now
    assert stack.writes() == {}
    assert len(stack.requested) == before


async def test_the_requested_job_fills_gold_with_the_simulators_numbers(stack: Stack, world: dict[str, Any]) -> None:
    w = stack.w
    for tenant, run in world["runs"].items():
        assert run.state.result_state == jobs.RunResultState.SUCCESS, (
            tenant,
            [(t.task_key, t.state) for t in run.tasks],
        )
    cat_a, cat_b = naming.catalog_name(A), naming.catalog_name(B)
    pay: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 2)
    for r in _records(stack, world["codes"][A], "payroll_runs"):
        acc = pay[(r["PRACTICE_LOCATION"], r["PAY_DATE"][:7] + "-01")]
        acc[0] += 1
        acc[1] += Decimal(r["GROSS_PAY"])
    got = _rows(
        w,
        f"SELECT practice_location, CAST(month AS STRING), payroll_runs, gross_pay FROM "
        f"{cat_a}.gold.payroll_summary ORDER BY 1, 2",
    )
    assert [[r[0], r[1], Decimal(r[2] or 0), Decimal(r[3] or 0)] for r in got] == [
        [loc, m, n, g] for (loc, m), (n, g) in sorted(pay.items())
    ]
    q = Decimal("0.0001")
    expected = sorted(
        [
            r["PRACTICE_LOCATION"],
            r["PERIOD_START"],
            Decimal(r["REVENUE"]),
            Decimal(r["NET_INCOME"]),
            (Decimal(r["NET_INCOME"]) / Decimal(r["REVENUE"])).quantize(q, ROUND_HALF_UP),
        ]
        for r in _records(stack, world["codes"][B], "financials")
    )
    got = _rows(
        w,
        f"SELECT practice_location, CAST(month AS STRING), revenue, net_income, net_margin"
        f" FROM {cat_b}.gold.financial_summary ORDER BY 1, 2",
    )
    assert [[r[0], r[1], *(Decimal(x or 0) for x in r[2:])] for r in got] == expected


async def test_grants_keep_tenants_and_layers_apart(stack: Stack, world: dict[str, Any]) -> None:
    cat_a, cat_b = naming.catalog_name(A), naming.catalog_name(B)
    analyst_a = _person(stack, "ana-a", naming.analysts_group(A))
    engineer_a = _person(stack, "eng-a", naming.engineers_group(A))
    outsider = _person(stack, "nobody", None)
    assert _rows(analyst_a, f"SELECT count(*) FROM {cat_a}.gold.payroll_summary")[0][0] != "0"
    assert _refused(analyst_a, f"SELECT * FROM {cat_b}.gold.financial_summary")
    assert _refused(analyst_a, f"SELECT * FROM {cat_a}.bronze.payroll_runs")
    # the engineer writes A's silver (MODIFY), not B's
    assert _rows(engineer_a, f"DELETE FROM {cat_a}.silver.payroll_runs WHERE payroll_run_id = 'none'") is not None
    assert _refused(engineer_a, f"DELETE FROM {cat_b}.silver.financials WHERE practice_location = 'none'")
    # without CAN_USE on the warehouse (no tenant group) a principal cannot run a statement at all
    with pytest.raises(PermissionDenied, match="CAN_USE"):
        _query(outsider, "SELECT 1")


async def test_run_finished_records_progress_and_the_api_shows_it(stack: Stack, world: dict[str, Any]) -> None:
    async def finished() -> Any:
        for _ in range(300):
            row = await stack.datasource(A, "adp-1")
            if row.state == "first_run_finished":
                return row
            await asyncio.sleep(0.1)
        raise AssertionError(row.state)

    row = await finished()
    run = world["runs"][A]
    assert row.last_run_id == str(run.run_id) and row.last_run_outcome == "success"
    async with stack.http(A, ("analyst",)) as http:
        got = (await http.get("/api/v1/datasources/adp-1")).json()
        assert got["state"] == "first_run_finished"
        assert got["last_run"]["run_page_url"] == run.run_page_url
        assert got["freshness"]["within_budget"] is True and got["freshness"]["budget_minutes"] == 60
        assert {s["step"] for s in got["steps"]} >= {
            "catalog",
            "grants",
            "warehouse",
            "mcp_registration",
            "files",
            "job_requested",
        }
        assert (await http.get("/api/v1/datasources/ns-1")).status_code == 404  # B's
        page = (await http.get("/api/v1/datasources", params={"tenant": A, "limit": 1})).json()
        assert [d["datasource_id"] for d in page["datasources"]] == ["adp-1"] and page["next_cursor"] is None
        assert (await http.get("/api/v1/datasources", params={"tenant": B})).status_code == 403
    async with stack.http(None) as anonymous:
        assert (await anonymous.get("/api/v1/datasources/adp-1")).status_code == 401
        metrics = (await anonymous.get("/metrics")).text
    assert 'apev_ingest_provisioning_step_seconds_count{step="catalog"}' in metrics


async def test_operators_see_every_tenant_and_a_tenants_table_row_counts(stack: Stack, world: dict[str, Any]) -> None:
    """The console's reads: `GET /api/v1/tenants` (admin) and `GET /api/v1/tenants/{tenant}/tables`."""
    cat_a = naming.catalog_name(A)
    async with stack.http(A, ("admin",)) as http:
        listed = {t["tenant_id"]: t for t in (await http.get("/api/v1/tenants")).json()["tenants"]}
        assert {A, B} <= set(listed) and listed[A]["datasources"] == 1 and listed[A]["catalog"] == cat_a
        body = (await http.get(f"/api/v1/tenants/{A}/tables")).json()
    assert body["provisioned"] is True
    counts = {(t["layer"], t["name"]): t["rows"] for t in body["tables"]}
    assert {layer for layer, _ in counts} == {"bronze", "silver", "gold"}
    want = _rows(stack.w, f"SELECT count(*) FROM {cat_a}.gold.payroll_summary")[0][0]
    assert counts[("gold", "payroll_summary")] == int(str(want)) > 0
    async with stack.http(A, ("analyst",)) as http:
        assert (await http.get("/api/v1/tenants")).status_code == 403  # a platform view
        assert (await http.get(f"/api/v1/tenants/{B}/tables")).status_code == 403  # another tenant's
        assert (await http.get(f"/api/v1/tenants/{A}/tables")).status_code == 200


async def test_a_tenant_creates_schemas_only_in_its_own_catalog(stack: Stack, world: dict[str, Any]) -> None:
    cat_a, cat_b = naming.catalog_name(A), naming.catalog_name(B)
    async with stack.http(A, ("admin",)) as http:
        refused = await http.post(f"/api/v1/databricks/catalogs/{cat_b}/schemas", json={"name": "sneaky"})
        assert refused.status_code == 403 and cat_a in refused.json()["detail"]
        assert (await http.post("/api/v1/databricks/catalogs", json={"name": cat_b})).status_code == 403
        made = await http.post(f"/api/v1/databricks/catalogs/{cat_a}/schemas", json={"name": "scratch"})
        assert made.status_code == 201
        again = await http.post(f"/api/v1/databricks/catalogs/{cat_a}/schemas", json={"name": "scratch"})
        assert again.status_code == 200 and again.json()["created"] is False
        assert (await http.post("/api/v1/databricks/catalogs", json={"name": cat_a})).status_code == 200
    async with stack.http(A, ("analyst",)) as http:
        assert (await http.post(f"/api/v1/databricks/catalogs/{cat_a}/schemas", json={"name": "x"})).status_code == 403
    assert "sneaky" not in {s.name for s in stack.w.schemas.list(catalog_name=cat_b)}
    assert "scratch" in {s.name for s in stack.w.schemas.list(catalog_name=cat_a)}


async def test_data_changed_requests_one_run_and_a_burst_while_pending_none_more(
    stack: Stack, world: dict[str, Any]
) -> None:
    code = world["codes"][A]
    await test_run_finished_records_progress_and_the_api_shows_it(stack, world)  # the first run is not pending
    before = len(stack.requests_for(A, "adp-1"))
    stack.mcp.tick(code, ["employees"], ratio=0.05)  # MCP signs and posts data.changed to the service
    (*_, changed) = await stack.wait_requests(A, "adp-1", before + 1)
    assert changed.data.action.type == "run" and changed.data.job is None
    for _ in range(20):
        stack.mcp.tick(code, ["payroll_runs"], ratio=0.01)
    await _delivered(stack, code, 21)
    await asyncio.sleep(1.0)
    assert len(stack.requests_for(A, "adp-1")) == before + 1
    # its run finishes: the burst came while it was pending, so exactly one more run is requested
    w = stack.w
    run = wait_run(w, w.jobs.run_now(job_id=world["jobs"][A]).run_id, timeout=180)
    await stack.send(run_finished(run, changed, A, "adp-1"))
    await stack.wait_requests(A, "adp-1", before + 2)
    await asyncio.sleep(1.0)
    assert len(stack.requests_for(A, "adp-1")) == before + 2


async def _delivered(stack: Stack, code: str, count: int) -> None:
    for _ in range(300):
        got = httpx.get(
            f"{stack.mcp.base_url}/__admin/webhooks/deliveries",
            headers={"Authorization": f"Bearer {stack.mcp.admin_key}"},
            timeout=10,
        ).json()
        done = [
            d for d in got if d["tenant_code"] == code and d["type"] == "data.changed" and d["status"] == "delivered"
        ]
        if len(done) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"MCP delivered {len(done)} of {count} webhooks")


async def test_forged_stale_or_replayed_webhooks_get_401(stack: Stack, world: dict[str, Any]) -> None:
    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "data.changed",
            "tenant_code": world["codes"][B],
            "created_at": datetime.now(UTC).isoformat(),
            "data": {"changed": {"financials": 3}},
        }
    ).encode()
    now = int(time.time())
    good = signed_headers(HOOK_SECRET, body, event="data.changed", delivery_id="d1", timestamp=now)
    forged = signed_headers("not-the-secret", body, event="data.changed", delivery_id="d1", timestamp=now)
    stale = signed_headers(HOOK_SECRET, body, event="data.changed", delivery_id="d1", timestamp=now - 3600)
    before = len(stack.requests_for(B, "ns-1"))
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        assert (await http.post("/webhooks/mcp", content=body, headers=forged)).status_code == 401
        assert (await http.post("/webhooks/mcp", content=body, headers=stale)).status_code == 401
        assert (await http.post("/webhooks/mcp", content=body)).status_code == 401
        first = await http.post("/webhooks/mcp", content=body, headers=good)
        assert first.status_code == 200 and first.json()["outcome"] in ("requested", "coalesced")
        assert (await http.post("/webhooks/mcp", content=body, headers=good)).status_code == 401  # replayed
    await asyncio.sleep(1.0)
    assert len(stack.requests_for(B, "ns-1")) - before == (1 if first.json()["outcome"] == "requested" else 0)


async def test_bad_events_go_to_the_dlq_naming_the_field_and_consumption_goes_on(
    stack: Stack, world: dict[str, Any]
) -> None:
    good = stack.created(A, "adp-1", "adp", ["employees", "payroll_runs"], world["codes"][A])
    base = json.loads(good.model_dump_json())
    bad_type = {**base, "id": str(uuid.uuid4()), "data": {**base["data"], "system": "quickbooks"}}
    bad_tenant = {
        **base,
        "id": str(uuid.uuid4()),
        "tenantid": "Bad_Tenant!",
        "data": {**base["data"], "tenant_id": "Bad_Tenant!"},
    }
    no_mcp = stack.created(A, "sf-1", "snowflake", ["warehouse"], world["codes"][A])
    headers = [("content-type", b"application/cloudevents+json")]
    for value in (bad_type, bad_tenant):
        await stack.send_raw("datasource.created", json.dumps(value).encode(), key=A.encode(), headers=headers)
    await stack.send(no_mcp, good)
    await stack.handled(good.id)
    for _ in range(100):
        if len(stack.dead) >= 3:
            break
        await asyncio.sleep(0.1)
    reasons = [{k: v.decode() for k, v in r.headers if k.startswith("x-apev-dlq-")} for r in stack.dead]
    messages = [r["x-apev-dlq-error-message"] for r in reasons]
    assert len(reasons) == 3 and all(r["x-apev-dlq-reason"] == "permanent" for r in reasons), reasons
    assert any(m.startswith("data.system:") for m in messages), messages  # the field, with what is allowed
    assert any(m.startswith("tenantid:") and "Bad_Tenant!" in m for m in messages), messages
    assert any(m.startswith("system:") and "snowflake" in m for m in messages), messages


async def test_a_databricks_5xx_half_way_is_retried_and_resumes_without_creating_twice(
    stack: Stack, world: dict[str, Any]
) -> None:
    tenant, code = "tenant-c", stack.mcp.new_tenant("tc")
    stack.ws.reset_counters()
    stack.ws.add_fault(
        method="POST",
        path="/api/2.1/unity-catalog/volumes",
        action="error",
        status=500,
        error_code="INTERNAL_ERROR",
        message="boom",
        count=2,
    )
    try:
        await stack.send(stack.created(tenant, "pms-1", "dentrix", ["production_kpis"], code))
        (request,) = await stack.wait_requests(tenant, "pms-1", 1)
    finally:
        stack.ws.clear_faults()
    counts = stack.ws.counters("/api/")
    assert counts.get("POST /api/2.1/unity-catalog/catalogs") == 1
    assert counts.get("POST /api/2.1/unity-catalog/volumes") == 3  # two refused, one applied
    assert sum(v for k, v in counts.items() if k.startswith("POST /api/2.0/preview/scim/v2/Groups")) == 3
    assert stack.w.volumes.read(f"{naming.catalog_name(tenant)}.bronze.landing").name == "landing"
    await asyncio.sleep(1.0)
    assert len(stack.requests_for(tenant, "pms-1")) == 1 and request.data.action.type == "run"
