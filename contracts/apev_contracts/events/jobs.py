"""`job.requested`: create or reset a Databricks job and/or run it, cancel a run or repair it."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from apev_contracts.common import (
    ContractModel,
    Identifier,
    JobKey,
    NumericId,
    ParamName,
    ParamValue,
    Schedule,
    ShortText,
    TagKey,
    TagValue,
    TaskKey,
    TenantId,
    WorkspacePath,
)
from apev_contracts.naming import JobKind, job_name

MAX_TASKS = 1000  # Databricks allows up to 1000 tasks per job; responses page them 100 at a time
MAX_TAGS = 25  # Databricks copies job tags to cluster tags, which are capped at 25
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600

PrincipalName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
]
"""A user name (e-mail), a service principal's application id, or a principal name such as `tenant_<t>_pipeline`."""
Parameters = Annotated[dict[ParamName, ParamValue], Field(max_length=100)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS)]


class TaskDependency(ContractModel):
    task_key: TaskKey


class PythonTask(ContractModel):
    python_file: WorkspacePath
    parameters: Annotated[list[ParamValue], Field(max_length=100)] = Field(default_factory=list)


class SqlTask(ContractModel):
    file: WorkspacePath
    """A `.sql` file in the workspace."""
    warehouse_id: Identifier | None = None
    """None: the service's warehouse (`DATABRICKS_WAREHOUSE_ID` or the first running one)."""
    parameters: Parameters = Field(default_factory=dict)


class NotebookTask(ContractModel):
    notebook_path: WorkspacePath
    base_parameters: Parameters = Field(default_factory=dict)


TaskType = Literal["python", "sql", "notebook"]


class TaskSpec(ContractModel):
    """One task of a job, in the shape of the Jobs API: exactly one of `python_task`, `sql_task`,
    `notebook_task` is set."""

    task_key: TaskKey
    depends_on: Annotated[list[TaskDependency], Field(max_length=MAX_TASKS)] = Field(default_factory=list)
    description: ShortText | None = None
    python_task: PythonTask | None = None
    sql_task: SqlTask | None = None
    notebook_task: NotebookTask | None = None
    timeout_seconds: Annotated[int, Field(ge=0, le=MAX_TIMEOUT_SECONDS)] = 0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 0

    @model_validator(mode="after")
    def _one_task_type(self) -> Self:
        set_ = [name for name in ("python_task", "sql_task", "notebook_task") if getattr(self, name) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"task {self.task_key!r} must set exactly one of python_task, sql_task, notebook_task (got {set_})"
            )
        return self

    @property
    def type(self) -> TaskType:
        if self.python_task is not None:
            return "python"
        return "sql" if self.sql_task is not None else "notebook"


class JobParameter(ContractModel):
    """A job-level parameter declaration; runs pass values with `job_parameters`."""

    name: ParamName
    default: ParamValue = ""


def _check_dag(tasks: list[TaskSpec]) -> list[TaskSpec]:
    keys = [t.task_key for t in tasks]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate task_key {duplicates}")
    known = set(keys)
    for task in tasks:
        for dep in task.depends_on:
            if dep.task_key not in known:
                raise ValueError(f"task {task.task_key!r} depends on unknown task {dep.task_key!r}")
            if dep.task_key == task.task_key:
                raise ValueError(f"task {task.task_key!r} depends on itself")
    # Kahn's algorithm: whatever is left after removing every task without pending dependencies is a cycle.
    pending = {t.task_key: {d.task_key for d in t.depends_on} for t in tasks}
    while ready := [k for k, deps in pending.items() if not deps]:
        for key in ready:
            del pending[key]
        for deps in pending.values():
            deps.difference_update(ready)
    if pending:
        raise ValueError(f"tasks {sorted(pending)} form a dependency cycle")
    return tasks


def _unique_params(params: list[JobParameter]) -> list[JobParameter]:
    names = [p.name for p in params]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate parameter names {duplicates}")
    return params


class JobSpec(ContractModel):
    """What the job should look like; the jobs service creates it or resets it to this (plus what it adds
    itself: the stable name, tags, notification destinations)."""

    tasks: Annotated[list[TaskSpec], Field(min_length=1, max_length=MAX_TASKS), AfterValidator(_check_dag)]
    parameters: Annotated[list[JobParameter], Field(max_length=100), AfterValidator(_unique_params)] = Field(
        default_factory=list
    )
    schedule: Schedule | None = None
    tags: Tags = Field(default_factory=dict)
    timeout_seconds: Annotated[int, Field(ge=0, le=MAX_TIMEOUT_SECONDS)] = 0
    """0: no timeout."""
    max_concurrent_runs: Annotated[int, Field(ge=1, le=1000)] = 1
    run_as: PrincipalName | None = None
    """Service principal the job runs as; None: the tenant's pipeline principal (`tenant_<t>_pipeline`)."""
    description: ShortText | None = None


ActionType = Literal["run", "cancel", "repair", "delete"]


class JobAction(ContractModel):
    """What to do now: `run` (with `job_parameters`, optionally `only` some tasks), `cancel` a run,
    `repair` a run (`rerun_tasks` or `rerun_all_failed_tasks`; `latest_repair_id` after the first repair), or
    `delete` the job (its active runs are cancelled first; deleting a job that is gone is a no-op)."""

    type: ActionType
    job_parameters: Parameters = Field(default_factory=dict)
    only: Annotated[list[TaskKey], Field(max_length=MAX_TASKS)] | None = None
    run_id: NumericId | None = None
    rerun_tasks: Annotated[list[TaskKey], Field(max_length=MAX_TASKS)] | None = None
    rerun_all_failed_tasks: bool = False
    latest_repair_id: NumericId | None = None

    @model_validator(mode="after")
    def _arguments_fit_the_action(self) -> Self:
        if self.type == "run":
            extra = [n for n in ("run_id", "rerun_tasks", "latest_repair_id") if getattr(self, n) is not None]
            if extra or self.rerun_all_failed_tasks:
                raise ValueError(
                    f"action 'run' takes job_parameters and only, not {extra or ['rerun_all_failed_tasks']}"
                )
            return self
        if self.type == "delete":
            given = [n for n in ("run_id", "only", "rerun_tasks", "latest_repair_id") if getattr(self, n) is not None]
            if given or self.job_parameters or self.rerun_all_failed_tasks:
                raise ValueError(f"action 'delete' takes no arguments, got {given or ['job_parameters']}")
            return self
        if self.run_id is None:
            raise ValueError(f"action {self.type!r} needs run_id")
        if self.type == "cancel":
            if self.job_parameters or self.only or self.rerun_tasks or self.rerun_all_failed_tasks:
                raise ValueError("action 'cancel' takes only run_id")
            return self
        if self.only is not None:
            raise ValueError("action 'repair' takes rerun_tasks, not only")
        if (self.rerun_tasks is not None) == self.rerun_all_failed_tasks:
            raise ValueError("action 'repair' needs exactly one of rerun_tasks and rerun_all_failed_tasks=true")
        if self.rerun_tasks is not None and not self.rerun_tasks:
            raise ValueError("action 'repair' needs at least one task in rerun_tasks")
        return self


class JobRequested(ContractModel):
    """A request to the jobs service for the job `ap:<tenant>:<kind>:<key>`. With `job`: create the job or
    reset it to the spec. With `action`: run it, or cancel or repair one of its runs. At least one is given.
    The request id is the event id."""

    tenant_id: TenantId
    kind: JobKind
    key: JobKey
    """Unique within (tenant, kind): the data source id for `ingest`, the agent id for `agent-*`."""
    job: JobSpec | None = None
    action: JobAction | None = None
    datasource_id: Identifier | None = None
    agent_id: Identifier | None = None
    model_version: Identifier | None = None

    @model_validator(mode="after")
    def _something_to_do(self) -> Self:
        if self.job is None and self.action is None:
            raise ValueError("a job request needs `job`, `action` or both")
        return self

    @property
    def job_name(self) -> str:
        """The stable Databricks job name, `ap:<tenant>:<kind>:<key>`."""
        return job_name(self.tenant_id, self.kind, self.key)
