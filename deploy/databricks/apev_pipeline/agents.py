"""(tenant, agent, model, tables, schedule) -> the two jobs of an agent, plus their task files.

    ap:<tenant>:agent-deploy:<agent>    agent_deploy: register the model source as a new UC model version and
                                        smoke-test it; serving rolls the agent's endpoint on its run.finished
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
DEFAULT_SMOKE_QUERY = "What are our top performing locations?"


@dataclass(frozen=True)
class AgentJobInput:
    """One input object, so fields can be added without breaking callers."""

    tenant_id: str
    agent_id: str
    model_name: str  # Unity Catalog model, <catalog>.<schema>.<name>
    model_source: str  # workspace (or /Volumes) path of the model's Python file
    config: dict[str, Any] = field(default_factory=dict)  # what the model reads as APEV_AGENT_CONFIG
    schedule: Schedule | None = None  # of the insights job
    smoke_query: str = DEFAULT_SMOKE_QUERY
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
                description="Register the model version in Unity Catalog and smoke-test it",
                python_task=PythonTask(
                    python_file=f"{folder}/agent_deploy.py",
                    parameters=[
                        "--model-name",
                        "{{job.parameters.model_name}}",
                        "--source",
                        "{{job.parameters.model_source}}",
                        "--config",
                        "{{job.parameters.config}}",
                        "--smoke-query",
                        "{{job.parameters.smoke_query}}",
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
            JobParameter(name="smoke_query", default=spec.smoke_query),
        ],
        tags=naming.job_tags(tenant, "agent-deploy", agent_id=agent),
        timeout_seconds=spec.timeout_seconds,
        max_concurrent_runs=1,  # deploys of one agent queue: versions register in order
        run_as=principal,
        description=f"Deploy agent {agent} of tenant {tenant}: register {spec.model_name}, smoke test",
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
