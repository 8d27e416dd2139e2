"""SQL tasks in jobs: a Python task lands NDJSON in a volume, SQL tasks load and merge it, as the run-as principal."""

from __future__ import annotations

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import catalog, jobs, sql

from apev_workspace.testing import py_task, upload, wait_run

FETCH = """
import io, json, sys
from databricks.sdk import WorkspaceClient

w = WorkspaceClient()
batch = int(sys.argv[1])
rows = [{"id": i, "name": f"employee {i}", "batch": batch} for i in range(batch * 3, batch * 3 + 5)]
body = "\\n".join(json.dumps(r) for r in rows).encode()
w.files.upload(f"/Volumes/acme/bronze/landing/employees/batch-{batch}.json", io.BytesIO(body), overwrite=True)
"""

LOAD = """
-- load_bronze: every landed file once
COPY INTO acme.bronze.employees_raw
FROM '/Volumes/acme/bronze/landing/employees'
FILEFORMAT = JSON
COPY_OPTIONS ('mergeSchema' = 'true');
"""

MERGE = """
MERGE INTO acme.silver.employees AS t
USING (
  SELECT id, name, batch FROM acme.bronze.employees_raw
  QUALIFY row_number() OVER (PARTITION BY id ORDER BY batch DESC) = 1
) AS s
ON t.id = s.id
WHEN MATCHED THEN UPDATE SET *
WHEN NOT MATCHED THEN INSERT *;
INSERT INTO acme.silver.load_log SELECT :source, count(*) FROM acme.silver.employees;
"""


def _job(w: WorkspaceClient, warehouse: str, run_as: str) -> int:
    fetch = upload(w, "/Shared/pipeline/fetch.py", FETCH)
    load = upload(w, "/Shared/pipeline/load_bronze.sql", LOAD)
    merge = upload(w, "/Shared/pipeline/bronze_to_silver.sql", MERGE)

    def sql_task(key: str, path: str, after: str) -> jobs.Task:
        return jobs.Task(
            task_key=key,
            depends_on=[jobs.TaskDependency(task_key=after)],
            sql_task=jobs.SqlTask(
                warehouse_id=warehouse,
                file=jobs.SqlTaskFile(path=path, source=jobs.Source.WORKSPACE),
                parameters={"source": "{{job.parameters.source}}-{{job.run_id}}"},
            ),
        )

    job = w.jobs.create(
        name="ap:acme:ingest:adp",
        parameters=[
            jobs.JobParameterDefinition(name="source", default="adp"),
            jobs.JobParameterDefinition(name="batch", default="0"),
        ],
        run_as=jobs.JobRunAs(service_principal_name=run_as),
        tasks=[
            py_task("fetch_from_mcp", fetch, "{{job.parameters.batch}}"),
            sql_task("load_bronze", load, "fetch_from_mcp"),
            sql_task("bronze_to_silver", merge, "load_bronze"),
        ],
    )
    return job.job_id  # type: ignore[return-value]


def test_python_and_sql_tasks_build_a_table(w: WorkspaceClient) -> None:
    warehouse = next(iter(w.warehouses.list())).id
    w.catalogs.create(name="acme")
    for schema in ("bronze", "silver"):
        w.schemas.create(name=schema, catalog_name="acme")
    w.volumes.create(catalog_name="acme", schema_name="bronze", name="landing", volume_type=catalog.VolumeType.MANAGED)
    for ddl in (
        "CREATE TABLE acme.bronze.employees_raw (id BIGINT)",
        "CREATE TABLE acme.silver.employees (id BIGINT, name STRING, batch BIGINT) USING DELTA",
        "CREATE TABLE acme.silver.load_log (source STRING, total BIGINT)",
    ):
        done = w.statement_execution.execute_statement(statement=ddl, warehouse_id=warehouse, wait_timeout="30s")
        assert done.status.state == sql.StatementState.SUCCEEDED, done.status.error
    pipeline = w.service_principals.create(display_name="tenant_acme_pipeline")
    everything = [catalog.Privilege.ALL_PRIVILEGES]
    w.grants.update(
        "catalog", "acme", changes=[catalog.PermissionsChange(principal=pipeline.application_id, add=everything)]
    )
    job_id = _job(w, warehouse, pipeline.application_id)

    first = wait_run(w, w.jobs.run_now(job_id).run_id)
    assert first.state.result_state == jobs.RunResultState.SUCCESS, [(t.task_key, t.state) for t in first.tasks]
    second = wait_run(w, w.jobs.run_now(job_id, job_parameters={"batch": "1"}).run_id)
    assert second.state.result_state == jobs.RunResultState.SUCCESS, [(t.task_key, t.state) for t in second.tasks]

    def query(text: str) -> list[list[str | None]]:
        response = w.statement_execution.execute_statement(statement=text, warehouse_id=warehouse, wait_timeout="30s")
        assert response.status.state == sql.StatementState.SUCCEEDED, response.status.error
        return response.result.data_array or []

    assert query("SELECT count(*) FROM acme.bronze.employees_raw") == [["10"]]  # each file loaded once
    assert query("SELECT count(*), max(batch) FROM acme.silver.employees") == [["8", "1"]]
    assert query("SELECT name, batch FROM acme.silver.employees WHERE id = 4") == [["employee 4", "1"]]
    log = query("SELECT source, total FROM acme.silver.load_log ORDER BY total")
    assert log == [[f"adp-{first.run_id}", "5"], [f"adp-{second.run_id}", "8"]]


def test_failing_sql_task_reports_the_error(w: WorkspaceClient) -> None:
    warehouse = next(iter(w.warehouses.list())).id
    path = upload(w, "/Shared/bad.sql", "SELECT * FROM nowhere.nothing.none")
    job = w.jobs.create(
        name="bad",
        tasks=[
            jobs.Task(task_key="q", sql_task=jobs.SqlTask(warehouse_id=warehouse, file=jobs.SqlTaskFile(path=path)))
        ],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    assert run.state.result_state == jobs.RunResultState.FAILED
    output = w.jobs.get_run_output(run.tasks[0].run_id)
    assert "NO_SUCH_CATALOG_EXCEPTION" in (output.error or "")
