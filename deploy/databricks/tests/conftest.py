"""One local workspace and one MCP simulator per module; tenants provisioned the way the ingest service will."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import catalog, iam, jobs, sql
from databricks.sdk.service.workspace import ImportFormat

from apev_contracts import naming
from apev_mcpsim.testing import RunningMcp, running_mcp
from apev_pipeline import IngestJob, IngestJobInput, build_ingest_job
from apev_workspace.testing import RunningWorkspace, running_workspace, wait_run


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningWorkspace, RunningMcp]]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DATABRICKS_")}
    os.environ["DATABRICKS_CONFIG_FILE"] = str(tmp_path_factory.mktemp("cfg") / "none")
    try:
        with (
            running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=4) as ws,
            running_mcp(locations=3, days=62, webhook_backoff=0.05) as mcp,
        ):
            yield ws, mcp
    finally:
        os.environ.pop("DATABRICKS_CONFIG_FILE", None)
        os.environ.update(saved)


@dataclass
class Tenant:
    tenant_id: str
    code: str  # MCP tenant code
    key: str  # tenant-scoped MCP key
    catalog: str
    pipeline: iam.ServicePrincipal
    as_pipeline: WorkspaceClient
    as_engineer: WorkspaceClient
    as_analyst: WorkspaceClient
    jobs: dict[str, tuple[IngestJob, int]]  # data source -> (build, job id)

    def mcp_records(self, mcp: RunningMcp, entity: str) -> list[dict[str, str]]:
        response = httpx.get(
            f"{mcp.base_url}/api/v1/data/{entity}",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        response.raise_for_status()
        records: list[dict[str, str]] = response.json()
        assert 0 < len(records) < 1000
        return records


def warehouse(w: WorkspaceClient) -> str:
    return str(next(iter(w.warehouses.list())).id)


def query(w: WorkspaceClient, statement: str) -> sql.StatementResponse:
    return w.statement_execution.execute_statement(statement=statement, warehouse_id=warehouse(w), wait_timeout="50s")


def rows(w: WorkspaceClient, statement: str) -> list[list[str | None]]:
    done = query(w, statement)
    assert done.status.state == sql.StatementState.SUCCEEDED, (statement, done.status.error)
    return (done.result.data_array or []) if done.result else []


def _principal(
    w: WorkspaceClient, ws: RunningWorkspace, name: str, group: str | None
) -> tuple[iam.ServicePrincipal, WorkspaceClient]:
    sp = w.service_principals.create(display_name=name)
    if group is not None:
        w.groups.create(display_name=group, members=[iam.ComplexValue(value=sp.id)])
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=3600)
    return sp, ws.client(token=token.token_value)


def _grant(w: WorkspaceClient, kind: str, name: str, principal: str, *privileges: catalog.Privilege) -> None:
    w.grants.update(kind, name, changes=[catalog.PermissionsChange(principal=principal, add=list(privileges))])


def provision(ws: RunningWorkspace, mcp: RunningMcp, tenant_id: str) -> Tenant:
    """What the ingest service does on datasource.created (ARCHITECTURE §3, §8), and the README lists."""
    w = ws.client()
    code = mcp.new_tenant()
    key = mcp.tenant_key(code)
    cat = naming.catalog_name(tenant_id)
    w.catalogs.create(name=cat)
    for schema in ("bronze", "silver", "gold"):
        w.schemas.create(name=schema, catalog_name=cat)
    w.volumes.create(catalog_name=cat, schema_name="bronze", name="landing", volume_type=catalog.VolumeType.MANAGED)
    pipeline, as_pipeline = _principal(w, ws, naming.pipeline_principal(tenant_id), None)
    _, as_engineer = _principal(w, ws, f"eng-{tenant_id}", naming.engineers_group(tenant_id))
    _, as_analyst = _principal(w, ws, f"ana-{tenant_id}", naming.analysts_group(tenant_id))
    p = catalog.Privilege
    app = str(pipeline.application_id)
    _grant(w, "catalog", cat, app, p.USE_CATALOG, p.USE_SCHEMA, p.SELECT, p.MODIFY, p.CREATE_TABLE, p.CREATE_FUNCTION)
    _grant(w, "volume", f"{cat}.bronze.landing", app, p.READ_VOLUME, p.WRITE_VOLUME)
    engineers, analysts = naming.engineers_group(tenant_id), naming.analysts_group(tenant_id)
    _grant(w, "catalog", cat, engineers, p.USE_CATALOG)
    _grant(w, "schema", f"{cat}.bronze", engineers, p.USE_SCHEMA, p.MODIFY)  # write, not read: bronze holds raw PII
    _grant(w, "schema", f"{cat}.silver", engineers, p.USE_SCHEMA, p.SELECT, p.MODIFY)
    _grant(w, "schema", f"{cat}.gold", engineers, p.USE_SCHEMA, p.SELECT)
    _grant(w, "catalog", cat, analysts, p.USE_CATALOG)
    _grant(w, "schema", f"{cat}.gold", analysts, p.USE_SCHEMA, p.SELECT)
    scope = naming.secret_scope(tenant_id)
    w.secrets.create_scope(scope=scope)
    w.secrets.put_secret(scope=scope, key="mcp_api_key", string_value=key)
    w.secrets.put_secret(scope=scope, key="mcp_base_url", string_value=mcp.base_url)
    w.secrets.put_acl(scope=scope, principal=app, permission=workspace_acl_read())
    return Tenant(tenant_id, code, key, cat, pipeline, as_pipeline, as_engineer, as_analyst, {})


def workspace_acl_read():  # type: ignore[no-untyped-def]
    from databricks.sdk.service.workspace import AclPermission

    return AclPermission.READ


def deploy(
    ws: RunningWorkspace, mcp: RunningMcp, tenant: Tenant, datasource_id: str, system: str, entities: list[str]
) -> int:
    """Register the MCP integration, upload the task files, create the job from the builder's spec."""
    w = ws.client()
    registered = httpx.post(
        f"{mcp.base_url}/api/v1/integrations/register",
        json={"integration_type": system, "datasource_id": datasource_id},
        headers={"Authorization": f"Bearer {tenant.key}"},
        timeout=10,
    )
    registered.raise_for_status()
    built = build_ingest_job(
        IngestJobInput(
            tenant_id=tenant.tenant_id,
            datasource_id=datasource_id,
            system=system,
            entities=entities,
            warehouse_id=warehouse(w),
            page_size=50,
        )
    )
    for file in built.files:
        w.workspace.mkdirs(file.path.rsplit("/", 1)[0])
        w.workspace.import_(
            path=file.path,
            content=base64.b64encode(file.content.encode()).decode(),
            format=ImportFormat.AUTO,
            overwrite=True,
        )
    job_id = create_job(w, built, str(tenant.pipeline.application_id))
    tenant.jobs[datasource_id] = (built, job_id)
    return job_id


def create_job(w: WorkspaceClient, built: IngestJob, run_as_application_id: str) -> int:
    """The builder's JobSpec in the SDK's shape, as the jobs service sends it (run_as: name -> application id)."""
    spec = built.job
    tasks = []
    for t in spec.tasks:
        extra: dict[str, object] = {}
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
                description=t.description,
                depends_on=[jobs.TaskDependency(task_key=d.task_key) for d in t.depends_on] or None,
                timeout_seconds=t.timeout_seconds,
                max_retries=t.max_retries,
                **extra,  # type: ignore[arg-type]
            )
        )
    created = w.jobs.create(
        name=built.name,
        tasks=tasks,
        parameters=[jobs.JobParameterDefinition(name=p.name, default=p.default) for p in spec.parameters],
        tags=dict(spec.tags),
        timeout_seconds=spec.timeout_seconds,
        max_concurrent_runs=spec.max_concurrent_runs,
        run_as=jobs.JobRunAs(service_principal_name=run_as_application_id),
    )
    return int(created.job_id or 0)


def run_job(w: WorkspaceClient, job_id: int) -> jobs.Run:
    return wait_run(w, w.jobs.run_now(job_id=job_id).run_id, timeout=120)


def start_job(w: WorkspaceClient, job_id: int) -> int:
    return int(w.jobs.run_now(job_id=job_id).run_id)


def task(run: jobs.Run, key: str) -> jobs.RunTask:
    return next(t for t in run.tasks or [] if t.task_key == key)


def output(w: WorkspaceClient, run: jobs.Run, key: str) -> jobs.RunOutput:
    return w.jobs.get_run_output(task(run, key).run_id)


def result(run: jobs.Run) -> str:
    return run.state.result_state.value if run.state and run.state.result_state else "?"
