"""(tenant, agent, model, tables, schedule) -> the two jobs of an agent, plus their task files.

    ap:<tenant>:agent-deploy:<agent>    agent_deploy: an MLflow run in the agent's experiment; register the model
                                        source as a new UC model version with that run id; smoke-test it on a
                                        fixed question set (answer accuracy, latency logged to the run); serving
                                        rolls the agent's endpoint on its run.finished if the accuracy holds
    ap:<tenant>:agent-insights:<agent>  agent_insights: run the agent over gold, append to gold.agent_insights;
                                        on the agent's schedule

Both run as the agent's principal `agent_<id>` (ARCHITECTURE §8), so what the agent may read is what Unity
Catalog grants it. Tags carry `ap_agent_id` (cost attribution, and how serving recognises the runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from apev_contracts import naming
from apev_contracts.common import Schedule
from apev_contracts.events.jobs import JobAction, JobParameter, JobRequested, JobSpec, PythonTask, TaskSpec
from apev_pipeline.files import DEFAULT_ROOT, TaskFile, packaged

AGENT_TASKS = ("agent_deploy.py", "agent_insights.py", "demo_agent.py")
INSIGHTS_TABLE_COLUMNS = (
    ("insight_id", "STRING"),
    ("agent_id", "STRING"),
    ("run_id", "STRING"),
    ("kind", "STRING"),
    ("target_system", "STRING"),
    ("entity_type", "STRING"),
    ("entity_id", "STRING"),
    ("changes", "STRING"),
    ("reason", "STRING"),
    ("confidence", "DOUBLE"),
    ("review_required", "BOOLEAN"),
    ("created_at", "TIMESTAMP"),
)
DEFAULT_ACCURACY_THRESHOLD = 0.8
SERVING_ALIAS = "serving"  # the registered model's alias on the version the endpoint serves (agent_insights reads it)

# The smoke test's fixed question set. Each answer is right when every value of `expect_sql`'s rows (run as the
# agent's principal; `{catalog}` is the tenant's) is in it: the numbers, as numbers, and the words as words.
# A question counts only for agents whose tables include all of its `tables`.
DEFAULT_SMOKE_QUESTIONS: tuple[dict[str, Any], ...] = (
    {
        "id": "top_locations",
        "question": "What are our top performing locations?",
        "tables": ["gold.monthly_kpis"],
        "expect_sql": "SELECT practice_location, CAST(sum(collections) AS DECIMAL(18,2))"
        " FROM {catalog}.gold.monthly_kpis GROUP BY practice_location ORDER BY 2 DESC, 1 LIMIT 3",
    },
    {
        "id": "collection_rate",
        "question": "What is the collection rate of each location?",
        "tables": ["gold.monthly_kpis"],
        "expect_sql": "SELECT practice_location, collection_rate FROM {catalog}.gold.monthly_kpis"
        " WHERE month = (SELECT max(month) FROM {catalog}.gold.monthly_kpis) ORDER BY 2 DESC, 1",
    },
    {
        "id": "payroll_summary",
        "question": "Give me the payroll summary",
        "tables": ["gold.payroll_summary"],
        "expect_sql": "SELECT practice_location, gross_pay, net_pay FROM {catalog}.gold.payroll_summary"
        " WHERE month = (SELECT max(month) FROM {catalog}.gold.payroll_summary) ORDER BY 2 DESC, 1",
    },
)


@dataclass(frozen=True)
class AgentJobInput:
    """One input object, so fields can be added without breaking callers."""

    tenant_id: str
    agent_id: str
    model_name: str  # Unity Catalog model, <catalog>.<schema>.<name>
    model_source: str  # workspace (or /Volumes) path of the model's Python file
    config: dict[str, Any] = field(default_factory=dict)  # what the model reads as APEV_AGENT_CONFIG
    schedule: Schedule | None = None  # of the insights job
    smoke_questions: tuple[dict[str, Any], ...] = DEFAULT_SMOKE_QUESTIONS
    accuracy_threshold: float = DEFAULT_ACCURACY_THRESHOLD  # recorded on the run; serving decides with its own
    experiment_name: str = ""  # MLflow experiment; empty: `/Users/<agent principal>/agentprovision/<agent id>`
    root: str = DEFAULT_ROOT
    timeout_seconds: int = 1800


@dataclass(frozen=True)
class AgentJobs:
    tenant_id: str
    agent_id: str
    deploy: JobSpec
    insights: JobSpec
    files: list[TaskFile]
    model_version: str | None = None

    def deploy_request(self, *, run: bool = True) -> JobRequested:
        return JobRequested(
            tenant_id=self.tenant_id,
            kind="agent-deploy",
            key=self.agent_id,
            job=self.deploy,
            action=JobAction(type="run") if run else None,
            agent_id=self.agent_id,
        )

    def insights_request(self, *, run: bool = False) -> JobRequested:
        return JobRequested(
            tenant_id=self.tenant_id,
            kind="agent-insights",
            key=self.agent_id,
            job=self.insights,
            action=JobAction(type="run") if run else None,
            agent_id=self.agent_id,
        )


def agent_files(root: str = DEFAULT_ROOT) -> list[TaskFile]:
    """The agents' shared task files and the demo agent's model file, under `<root>/agents/`."""
    return [TaskFile(path=f"{root}/agents/{n}", content=packaged(n), language="PYTHON") for n in AGENT_TASKS]


def demo_agent_path(root: str = DEFAULT_ROOT) -> str:
    return f"{root}/agents/demo_agent.py"


def insights_table_ddl(catalog: str) -> str:
    columns = ", ".join(f"{n} {t}" for n, t in INSIGHTS_TABLE_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {catalog}.gold.agent_insights ({columns})"


def build_agent_jobs(spec: AgentJobInput) -> AgentJobs:
    tenant = naming.validate_tenant_id(spec.tenant_id)
    agent = naming.validate_agent_id(spec.agent_id)
    naming.job_name(tenant, "agent-deploy", agent)  # the agent id must also be a job key
    if spec.model_name.count(".") != 2:
        raise ValueError(f"model_name {spec.model_name!r} must be <catalog>.<schema>.<name>")
    config = json.dumps(spec.config, sort_keys=True, separators=(",", ":"))
    principal = naming.agent_principal(agent)
    folder = f"{spec.root}/agents"
    deploy = JobSpec(
        tasks=[
            TaskSpec(
                task_key="agent_deploy",
                description="MLflow run; register the model version in Unity Catalog with its run id; smoke test",
                python_task=PythonTask(
                    python_file=f"{folder}/agent_deploy.py",
                    parameters=[
                        "--model-name",
                        "{{job.parameters.model_name}}",
                        "--source",
                        "{{job.parameters.model_source}}",
                        "--config",
                        "{{job.parameters.config}}",
                        "--questions",
                        "{{job.parameters.smoke_questions}}",
                        "--accuracy-threshold",
                        "{{job.parameters.accuracy_threshold}}",
                        "--experiment",
                        "{{job.parameters.experiment}}",
                        "--agent-id",
                        agent,
                        "--run-id",
                        "{{job.run_id}}",
                    ],
                ),
                timeout_seconds=900,
            )
        ],
        parameters=[
            JobParameter(name="model_name", default=spec.model_name),
            JobParameter(name="model_source", default=spec.model_source),
            JobParameter(name="config", default=config),
            JobParameter(
                name="smoke_questions",
                default=json.dumps(list(spec.smoke_questions), sort_keys=True, separators=(",", ":")),
            ),
            JobParameter(name="accuracy_threshold", default=repr(float(spec.accuracy_threshold))),
            JobParameter(name="experiment", default=spec.experiment_name),
        ],
        tags=naming.job_tags(tenant, "agent-deploy", agent_id=agent),
        timeout_seconds=spec.timeout_seconds,
        max_concurrent_runs=1,  # deploys of one agent queue: versions register in order
        run_as=principal,
        description=f"Deploy agent {agent} of tenant {tenant}: register {spec.model_name}, smoke test (MLflow)",
    )
    insights = JobSpec(
        tasks=[
            TaskSpec(
                task_key="agent_insights",
                description="Run the agent over gold; append new insights to gold.agent_insights",
                python_task=PythonTask(
                    python_file=f"{folder}/agent_insights.py",
                    parameters=[
                        "--model-name",
                        "{{job.parameters.model_name}}",
                        "--agent-id",
                        "{{job.parameters.agent_id}}",
                        "--config",
                        "{{job.parameters.config}}",
                        "--run-id",
                        "{{job.run_id}}",
                    ],
                ),
                timeout_seconds=1800,
                max_retries=1,
            )
        ],
        parameters=[
            JobParameter(name="model_name", default=spec.model_name),
            JobParameter(name="agent_id", default=agent),
            JobParameter(name="config", default=config),
        ],
        schedule=spec.schedule,
        tags=naming.job_tags(tenant, "agent-insights", agent_id=agent),
        timeout_seconds=spec.timeout_seconds,
        max_concurrent_runs=1,
        run_as=principal,
        description=f"Insights of agent {agent} of tenant {tenant} over its gold tables",
    )
    return AgentJobs(tenant, agent, deploy, insights, agent_files(spec.root))
