"""What each task of the pipeline's jobs reads and writes: the datasets of their OpenLineage events.

The pipeline knows its own data flow, so the jobs service asks it (pure data, no I/O):

    MCP entity --fetch_from_mcp--> landing folder --load_bronze--> bronze.<e> --bronze_to_silver--> silver.<e>
        --quality_checks (reads bronze, silver) ; silver.<e> --silver_to_gold--> gold.<t> (tables requiring <e>)
    gold.<tables the agent reads> --agent_insights--> gold.agent_insights --(writeback service)--> MCP write-back
    model source file --agent_deploy--> the Unity Catalog model `<catalog>.<schema>.<name>` (a new version)

Names (OpenLineage naming): MCP entities are `<system>.<entity>` in namespace `mcp://<tenant>`; volumes and tables
are in the workspace's namespace, a landing folder by its `/Volumes/...` path, a table by `<catalog>.<schema>.<t>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from apev_contracts import naming
from apev_pipeline.agents import INSIGHTS_TABLE_COLUMNS
from apev_pipeline.entities import ENTITIES, GOLD_TABLES, Entity
from apev_pipeline.render import landing_folder

MCP_NAMESPACE_PREFIX = "mcp://"
_NAME = re.compile(
    r"^(?:[A-Za-z0-9_]+\.)?[A-Za-z0-9_]+\.[A-Za-z0-9_]+$"
)  # [catalog.]schema.table; the tenant's catalog
WRITEBACK_DATASET = "writeback"
"""The MCP write-back of a tenant (`mcp://<tenant>`, `writeback`): what writeback applies from agent insights."""


@dataclass(frozen=True)
class Dataset:
    """One dataset. `workspace` True: in the workspace's namespace; else in the tenant's MCP namespace."""

    name: str
    workspace: bool = True
    columns: tuple[tuple[str, str], ...] = ()  # (name, type) when the pipeline knows them; () otherwise
    table: str | None = None  # `<catalog>.<schema>.<t>` of a table (the jobs service reads its schema, counts)


@dataclass(frozen=True)
class TaskDatasets:
    inputs: tuple[Dataset, ...] = ()
    outputs: tuple[Dataset, ...] = ()


@dataclass(frozen=True)
class JobLineage:
    tasks: dict[str, TaskDatasets] = field(default_factory=dict)

    def inputs(self) -> list[Dataset]:
        """The job's inputs: what its tasks read that no task of it writes."""
        written = {d.name for t in self.tasks.values() for d in t.outputs}
        return _unique(d for t in self.tasks.values() for d in t.inputs if d.name not in written)

    def outputs(self) -> list[Dataset]:
        return _unique(d for t in self.tasks.values() for d in t.outputs)


def _unique(items: object) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for d in items:  # type: ignore[attr-defined]
        seen.setdefault(d.name, d)
    return list(seen.values())


def mcp_namespace(tenant_id: str) -> str:
    return MCP_NAMESPACE_PREFIX + naming.validate_tenant_id(tenant_id)


def _table(catalog: str, schema: str, name: str, columns: tuple[tuple[str, str], ...] = ()) -> Dataset:
    full = f"{catalog}.{schema}.{name}"
    return Dataset(full, columns=columns, table=full)


def _bronze(catalog: str, e: Entity) -> Dataset:
    return _table(catalog, "bronze", e.name, tuple((f, "STRING") for f in e.source_fields))


def _silver(catalog: str, e: Entity) -> Dataset:
    return _table(catalog, "silver", e.name, tuple(e.columns.items()))


def ingest_lineage(tenant_id: str, parameters: dict[str, str]) -> JobLineage:
    """The ingestion job's datasets from its job parameters (`catalog`, `datasource_id`, `system`, `entities`)."""
    catalog = naming.catalog_name(tenant_id)  # never the parameter: a run's lineage stays in its tenant's catalog
    datasource = parameters.get("datasource_id", "")
    system = parameters.get("system", "mcp")
    entities = [ENTITIES[e] for e in parameters.get("entities", "").split(",") if e in ENTITIES]
    names = {e.name for e in entities}
    landing = {e.name: Dataset(landing_folder(catalog, datasource, e.name)) for e in entities}
    gold = [g for g in GOLD_TABLES if names & set(g.requires)]
    return JobLineage(
        {
            "fetch_from_mcp": TaskDatasets(
                tuple(Dataset(f"{system}.{e.name}", workspace=False) for e in entities),
                tuple(landing[e.name] for e in entities),
            ),
            "load_bronze": TaskDatasets(
                tuple(landing[e.name] for e in entities), tuple(_bronze(catalog, e) for e in entities)
            ),
            "bronze_to_silver": TaskDatasets(
                tuple(_bronze(catalog, e) for e in entities), tuple(_silver(catalog, e) for e in entities)
            ),
            "quality_checks": TaskDatasets(
                tuple(d for e in entities for d in (_bronze(catalog, e), _silver(catalog, e)))
            ),
            "silver_to_gold": TaskDatasets(
                tuple(_silver(catalog, ENTITIES[r]) for g in gold for r in g.requires),
                tuple(_table(catalog, "gold", g.name) for g in gold),
            ),
        }
    )


def agent_insights_lineage(tenant_id: str, parameters: dict[str, str]) -> JobLineage:
    """The insights job: the gold tables its config names (`tables`, default every gold table of the pipeline)
    in, `gold.agent_insights` out, and the tenant's MCP write-back downstream of that."""
    catalog = naming.catalog_name(tenant_id)
    try:
        config = json.loads(parameters.get("config") or "{}")
    except ValueError:
        config = {}
    listed = config.get("tables") if isinstance(config, dict) else None
    tables = [str(t) for t in listed] if isinstance(listed, list) else [f"gold.{g.name}" for g in GOLD_TABLES]
    inputs = tuple(_table(catalog, t.split(".")[-2], t.split(".")[-1]) for t in tables if _NAME.fullmatch(t))
    insights = _table(catalog, "gold", "agent_insights", INSIGHTS_TABLE_COLUMNS)
    return JobLineage(
        {
            "agent_insights": TaskDatasets(inputs, (insights,)),
            # Not a Databricks task: each new row becomes an insight.created the writeback service applies to MCP.
            "mcp_writeback": TaskDatasets((insights,), (Dataset(WRITEBACK_DATASET, workspace=False),)),
        }
    )


def agent_deploy_lineage(parameters: dict[str, str]) -> JobLineage:
    """The deploy job: the model's source file in, the Unity Catalog model (a new version) out."""
    source, model = parameters.get("model_source", ""), parameters.get("model_name", "")
    if not source or model.count(".") != 2:
        return JobLineage()
    return JobLineage({"agent_deploy": TaskDatasets((Dataset(source),), (Dataset(model),))})


def job_lineage(tenant_id: str, kind: str, parameters: dict[str, str]) -> JobLineage:
    """The datasets of a job of this kind (`ingest`, `agent-insights`, `agent-deploy`); other kinds: none known."""
    if kind == "agent-deploy":
        return agent_deploy_lineage(parameters)
    if kind == "ingest":
        return ingest_lineage(tenant_id, parameters)
    if kind == "agent-insights":
        return agent_insights_lineage(tenant_id, parameters)
    return JobLineage()
