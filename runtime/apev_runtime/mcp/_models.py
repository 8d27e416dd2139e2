"""Request and response shapes of the MCP REST API (one input object per call)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Tenant(_Wire):
    tenant_code: str
    tenant_name: str
    industry: str | None = None
    products: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    status: str = "active"


class NewTenant(_Wire):
    tenant_code: str
    tenant_name: str
    industry: str | None = "dental"
    products: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    status: str = "active"


class ApiKey(_Wire):
    tenant_code: str
    api_key: str
    key_id: str


class ApiKeyInfo(_Wire):
    """A key as the admin listing shows it: never the secret."""

    tenant_code: str
    key_id: str
    created_at: datetime


class IntegrationRegistration(_Wire):
    integration_type: str
    datasource_id: str
    config: dict[str, Any] = Field(default_factory=dict)


class RegisteredIntegration(_Wire):
    integration_id: str
    status: str


class IntegrationStatus(_Wire):
    integration_type: str
    status: str
    last_sync_at: datetime | None = None
    next_sync_at: datetime | None = None
    error_message: str | None = None
    extra_data: dict[str, Any] = Field(default_factory=dict)


class SyncRequest(_Wire):
    integration_type: str
    entity_types: list[str] = Field(default_factory=list)
    location_ids: list[str] = Field(default_factory=list)
    sync_mode: str = "incremental"


class SyncRun(_Wire):
    sync_id: str
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    records_processed: int = 0
    errors: list[Any] = Field(default_factory=list)


class WriteBack(_Wire):
    """A change to one record of an outside system; ``expected_version`` makes it conditional."""

    entity_type: str
    entity_id: str
    changes: dict[str, Any]
    reason: str
    expected_version: int | None = None


class WriteBackResult(_Wire):
    change_id: str
    status: str
    entity_type: str
    entity_id: str
    version: int
    applied_at: datetime


class Page(BaseModel):
    """One page of ``/integrations/{id}/data``: normalised records and the cursor of the next page."""

    records: list[dict[str, Any]]
    next_cursor: str | None
