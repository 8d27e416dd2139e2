"""The tenant lifecycle (produced by the backend): a data source changed or was disconnected, a tenant left,
a person asked to be forgotten. Ingest, jobs and writeback each act on what they own."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from apev_contracts.common import ContractModel, EntityName, Identifier, Name, Schedule, TenantId
from apev_contracts.events.datasource import _unique

EmployeeId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
"""The outside system's employee id (MCP's `EMPLOYEE_ID`, e.g. `E00042`)."""
VOLUME_PATH = r"^/Volumes/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9_]+(/.*)?$"
VolumePath = Annotated[str, StringConstraints(max_length=1000, pattern=VOLUME_PATH)]


class DatasourceUpdated(ContractModel):
    """A tenant changed a connected system's entities or schedule. Ingest resets the data source's job to the
    new spec (once); nothing else changes (catalog, grants, MCP registration and credentials stay)."""

    tenant_id: TenantId
    datasource_id: Identifier
    entities: Annotated[list[EntityName], Field(min_length=1, max_length=100), AfterValidator(_unique)] | None = None
    """The MCP entity types to ingest from now on; None: unchanged."""
    schedule: Schedule | None = None
    """When the ingestion job runs from now on; None: only on demand."""


class DatasourceRemoved(ContractModel):
    """A tenant disconnected an outside system: its job is deleted (no scheduled run is left), its MCP
    integration deregistered and its landing files deleted; its tables are dropped only with `drop_tables`."""

    tenant_id: TenantId
    datasource_id: Identifier
    drop_tables: bool = False
    """True: drop the data source's bronze and silver tables too; False: keep them (gold is kept either way)."""


class TenantOffboarded(ContractModel):
    """A tenant left: every job is cancelled and deleted, the catalog dropped (with `force`), the tenant's
    principals and secret scope removed, its MCP keys revoked and a final cost sample taken."""

    tenant_id: TenantId
    reason: Name | None = None
    export_volume: VolumePath | None = None
    """Where to export the tenant's gold tables before the catalog goes (another catalog's volume); None: none."""


class ErasureRequested(ContractModel):
    """GDPR erasure of one person: their rows in bronze, silver and gold and the landing files that contain them
    are deleted, and write-backs about them that are held or pending are cancelled. The request id is the event
    id; the audit record keeps counts per table, never the personal data."""

    tenant_id: TenantId
    employee_id: EmployeeId
    requested_by: Name | None = None
    """Who asked (a JWT subject); kept in the audit record."""
