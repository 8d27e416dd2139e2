"""The ingestion pipeline: its Databricks task files and the builder of its job (`build_ingest_job`).

Imports only `apev_contracts`, pydantic and the standard library, so the ingest service (and anyone else)
can call the builder without pulling in a Databricks client.
"""

from apev_pipeline.agents import AgentJobInput, AgentJobs, build_agent_jobs
from apev_pipeline.builder import IngestJob, IngestJobInput, build_ingest_job
from apev_pipeline.entities import ENTITIES, GOLD_TABLES, Entity, GoldTable
from apev_pipeline.files import TaskFile

__all__ = [
    "ENTITIES",
    "GOLD_TABLES",
    "AgentJobInput",
    "AgentJobs",
    "Entity",
    "GoldTable",
    "IngestJob",
    "IngestJobInput",
    "TaskFile",
    "build_agent_jobs",
    "build_ingest_job",
]
