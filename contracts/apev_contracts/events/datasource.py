"""`datasource.created`: a tenant connected an outside system (produced by the backend, consumed by ingest)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from apev_contracts.common import ContractModel, EntityName, Identifier, JsonObject, Name, Schedule, TenantId

OutsideSystem = Literal["adp", "netsuite", "dentalintel", "eaglesoft", "dentrix", "snowflake"]
McpTenantCode = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


def _unique(values: list[str]) -> list[str]:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate entries {duplicates}")
    return values


class DatasourceCreated(ContractModel):
    """A tenant connected an outside system; ingest lays out the catalog and schedules the ingestion job."""

    tenant_id: TenantId
    datasource_id: Identifier
    name: Name
    system: OutsideSystem
    entities: Annotated[list[EntityName], Field(min_length=1, max_length=100), AfterValidator(_unique)]
    """MCP entity types to ingest, e.g. `employees`, `payroll_runs`."""
    schedule: Schedule | None = None
    """When the ingestion job runs; None: only on demand (and on MCP "data changed" webhooks)."""
    mcp_tenant_code: McpTenantCode
    """The tenant's code on the MCP server (its tenant-scoped keys are `{code}_sk_...`)."""
    config: JsonObject = Field(default_factory=dict)
    """Connector settings that are not secrets (filters, locations, ...). Never put credentials here."""
