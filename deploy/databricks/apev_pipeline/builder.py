"""(tenant, data source, entities, schedule, freshness budget) -> the `job` of `job.requested`, plus files.

The job (ARCHITECTURE §3, §8): `ap:<tenant>:ingest:<data source>`, tagged for cost attribution, run as the
tenant's pipeline principal, one reusable job per data source:

    fetch_from_mcp -> load_bronze -> bronze_to_silver -> quality_checks -> silver_to_gold

Quality checks run before gold on purpose: a failed check fails the run *and* keeps the gold tables the
agents answer from at their last good state.
"""

from __future__ import annotations

from dataclasses import dataclass

from apev_contracts import naming
from apev_contracts.common import Schedule
from apev_contracts.events.jobs import (
    JobAction,
    JobParameter,
    JobRequested,
    JobSpec,
    PythonTask,
    SqlTask,
    TaskDependency,
    TaskSpec,
)
from apev_pipeline import render
from apev_pipeline.entities import ENTITIES
from apev_pipeline.files import DEFAULT_ROOT, TaskFile, gold_folder, static_files


@dataclass(frozen=True)
class IngestJobInput:
    """One input object, so fields can be added without breaking callers."""

    tenant_id: str
    datasource_id: str
    system: str  # MCP integration type: adp, netsuite, dentalintel, eaglesoft, dentrix
    entities: list[str]
    schedule: Schedule | None = None
    freshness_minutes: int = 24 * 60
    warehouse_id: str | None = None  # None: the jobs service fills in its default warehouse
    root: str = DEFAULT_ROOT  # workspace folder of the task files
    page_size: int = 500  # records per MCP request
    timeout_seconds: int = 2 * 3600
    fetch_retries: int = 2


@dataclass(frozen=True)
class IngestJob:
    name: str
    key: str
    job: JobSpec
    files: list[TaskFile]
    tenant_id: str
    datasource_id: str

    def request(self, *, run: bool = False) -> JobRequested:
        """The `job.requested` payload: create or reset the job, and run it now when `run`."""
        return JobRequested(
            tenant_id=self.tenant_id,
            kind="ingest",
            key=self.key,
            job=self.job,
            action=JobAction(type="run") if run else None,
            datasource_id=self.datasource_id,
        )


PARAMS = ("tenant_id", "catalog", "datasource_id", "system", "entities", "freshness_minutes", "page_size",
          "warehouse_id", "secret_scope")  # fmt: skip


def _args(*names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        out += [f"--{name.replace('_', '-')}", f"{{{{job.parameters.{name}}}}}"]
    return out


def build_ingest_job(spec: IngestJobInput) -> IngestJob:
    tenant = naming.validate_tenant_id(spec.tenant_id)
    name = naming.job_name(tenant, "ingest", spec.datasource_id)  # also validates the data source id as a key
    unknown = [e for e in spec.entities if e not in ENTITIES]
    if unknown or not spec.entities:
        raise ValueError(f"unknown MCP entity types {unknown or spec.entities}; the pipeline knows {sorted(ENTITIES)}")
    if spec.freshness_minutes <= 0 or spec.page_size <= 0:
        raise ValueError("freshness_minutes and page_size must be positive")
    entities = [ENTITIES[e] for e in spec.entities]
    catalog = naming.catalog_name(tenant)
    folder = f"{spec.root}/tenants/{tenant}/{spec.datasource_id}"
    rendered = [
        TaskFile(
            path=f"{folder}/load_bronze.sql",
            content=render.load_bronze(catalog, spec.datasource_id, entities),
            language="SQL",
        ),
        TaskFile(
            path=f"{folder}/bronze_to_silver.sql",
            content=render.bronze_to_silver(catalog, spec.datasource_id, entities, naming.engineers_group(tenant)),
            language="SQL",
        ),
    ]
    run = {"run_id": "{{job.run_id}}"}
    sql = {"warehouse_id": spec.warehouse_id, "parameters": run}
    run_args = ["--run-id", "{{job.run_id}}", "--repair-count", "{{job.repair_count}}"]
    tasks = [
        TaskSpec(
            task_key="fetch_from_mcp",
            description="Page through MCP since the watermark; NDJSON to the landing volume",
            python_task=PythonTask(
                python_file=f"{spec.root}/fetch_from_mcp.py", parameters=[*_args(*PARAMS), *run_args]
            ),
            timeout_seconds=3600,
            max_retries=spec.fetch_retries,
        ),
        TaskSpec(
            task_key="load_bronze",
            depends_on=[TaskDependency(task_key="fetch_from_mcp")],
            description="COPY INTO bronze, per entity",
            sql_task=SqlTask(file=rendered[0].path, **sql),
            timeout_seconds=1800,
            max_retries=1,
        ),
        TaskSpec(
            task_key="bronze_to_silver",
            depends_on=[TaskDependency(task_key="load_bronze")],
            description="Typed, de-duplicated MERGE into silver; PII masked",
            sql_task=SqlTask(file=rendered[1].path, **sql),
            timeout_seconds=1800,
            max_retries=1,
        ),
        TaskSpec(
            task_key="quality_checks",
            depends_on=[TaskDependency(task_key="bronze_to_silver")],
            description="Row counts, null and duplicate keys, freshness: a failed check fails the run",
            python_task=PythonTask(
                python_file=f"{spec.root}/quality_checks.py", parameters=[*_args(*PARAMS), "--run-id", "{{job.run_id}}"]
            ),
            timeout_seconds=900,
        ),
        TaskSpec(
            task_key="silver_to_gold",
            depends_on=[TaskDependency(task_key="quality_checks")],
            description="Gold tables whose silver sources exist",
            python_task=PythonTask(
                python_file=f"{spec.root}/silver_to_gold.py",
                parameters=[*_args("catalog", "warehouse_id"), "--gold-folder", gold_folder(spec.root)],
            ),
            timeout_seconds=1800,
            max_retries=1,
        ),
    ]
    defaults = {
        "tenant_id": tenant,
        "catalog": catalog,
        "datasource_id": spec.datasource_id,
        "system": spec.system,
        "entities": ",".join(spec.entities),
        "freshness_minutes": str(spec.freshness_minutes),
        "page_size": str(spec.page_size),
        "warehouse_id": spec.warehouse_id or "",
        "secret_scope": naming.secret_scope(tenant),
    }
    job = JobSpec(
        tasks=tasks,
        parameters=[JobParameter(name=p, default=defaults[p]) for p in PARAMS],
        schedule=spec.schedule,
        tags=naming.job_tags(tenant, "ingest", datasource_id=spec.datasource_id),
        timeout_seconds=spec.timeout_seconds,
        max_concurrent_runs=1,  # runs of one data source queue: two fetches would race on the watermark
        run_as=naming.pipeline_principal(tenant),
        description=f"Ingest {spec.system} data source {spec.datasource_id} of tenant {tenant} (MCP -> gold)",
    )
    return IngestJob(
        name=name,
        key=spec.datasource_id,
        job=job,
        files=[*static_files(spec.root), *rendered],
        tenant_id=tenant,
        datasource_id=spec.datasource_id,
    )
