"""The ``/api/v1`` routes and ``/health``: translate HTTP to backend calls and back, in the server's wire shape."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from apev_mcpsim import data
from apev_mcpsim.auth import Caller, admin_caller, backend_of, tenant_caller
from apev_mcpsim.exceptions import McpSimError
from apev_mcpsim.models import Backend, Tenant

IntegrationType = Literal["adp", "netsuite", "dentalintel", "eaglesoft", "dentrix"]
Limit = Annotated[int, Query(ge=1, le=1000)]
TenantCaller = Annotated[Caller, Depends(tenant_caller)]
BackendDep = Annotated[Backend, Depends(backend_of)]

router = APIRouter()


class TenantIn(BaseModel):
    tenant_code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    tenant_name: str = Field(min_length=1)
    industry: str | None = "dental"
    products: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    status: Literal["active", "inactive"] = "active"


class RegisterIn(BaseModel):
    integration_type: IntegrationType
    datasource_id: str = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict)


class UpdateIn(BaseModel):
    entity_type: str
    entity_id: str
    changes: dict[str, Any] = Field(min_length=1)
    reason: str = Field(min_length=1)
    expected_version: int | None = None


class SyncIn(BaseModel):
    integration_type: IntegrationType
    entity_types: list[str] = Field(default_factory=list)
    location_ids: list[str] = Field(default_factory=list)
    sync_mode: Literal["full", "incremental"] = "incremental"


class WebhookIn(BaseModel):
    url: str = Field(pattern=r"^https?://")
    secret: str = Field(min_length=8)
    events: list[str] | None = None


def _known_type(integration_type: str) -> str:
    if integration_type not in data.INTEGRATION_TYPES:
        raise McpSimError(404, f"Integration type '{integration_type}' not found")
    return integration_type


@router.get("/health")
async def health(backend: BackendDep) -> dict[str, Any]:
    return {"status": "healthy", "service": "dentalerp-mcp-simulator", "tenants": len(backend.tenants)}


# ---------------------------------------------------------------- tenants (unauthenticated, as on the real server)


@router.get("/api/v1/tenants/")
async def list_tenants(backend: BackendDep, limit: Limit = 100) -> list[dict[str, Any]]:
    return [t.view() for t in list(backend.tenants.values())[:limit]]


@router.post("/api/v1/tenants/", status_code=201)
async def create_tenant(body: TenantIn, backend: BackendDep) -> dict[str, Any]:
    return backend.create_tenant(Tenant(**body.model_dump())).view()


@router.get("/api/v1/tenants/{tenant_code}")
async def get_tenant(tenant_code: str, backend: BackendDep) -> dict[str, Any]:
    return backend.tenant(tenant_code).view()


@router.post("/api/v1/tenants/{tenant_code}/api-keys", status_code=201, dependencies=[Depends(admin_caller)])
async def mint_key(tenant_code: str, backend: BackendDep) -> dict[str, Any]:
    return backend.mint_key(tenant_code)


@router.get("/api/v1/tenants/{tenant_code}/api-keys", dependencies=[Depends(admin_caller)])
async def list_keys(tenant_code: str, backend: BackendDep) -> list[dict[str, Any]]:
    return backend.list_keys(tenant_code)


@router.delete("/api/v1/tenants/{tenant_code}/api-keys/{key_id}", status_code=204, dependencies=[Depends(admin_caller)])
async def revoke_key(tenant_code: str, key_id: str, backend: BackendDep) -> None:
    backend.revoke_key(tenant_code, key_id)


# ---------------------------------------------------------------- integrations and data


@router.post("/api/v1/integrations/register")
async def register(body: RegisterIn, caller: TenantCaller, backend: BackendDep) -> JSONResponse:
    integration, created = backend.register(
        caller.tenant.tenant_code, body.integration_type, body.datasource_id, body.config
    )
    payload = {"integration_id": integration.integration_id, "status": integration.status}
    return JSONResponse(payload, status_code=201 if created else 200)


@router.delete("/api/v1/integrations/{integration_id}", status_code=204)
async def deregister(integration_id: str, caller: TenantCaller, backend: BackendDep) -> None:
    backend.deregister(caller.tenant.tenant_code, integration_id)


@router.get("/api/v1/integrations/status")
async def integration_status(
    caller: TenantCaller, backend: BackendDep, type: IntegrationType | None = None
) -> list[dict[str, Any]]:
    return backend.statuses(caller.tenant.tenant_code, type)


@router.get("/api/v1/integrations/{integration_id}/data")
async def integration_data(
    integration_id: str,
    caller: TenantCaller,
    backend: BackendDep,
    entity_type: str,
    updated_since: datetime | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    return backend.page(
        caller.tenant.tenant_code,
        integration_id,
        entity_type,
        updated_since=updated_since,
        limit=limit,
        cursor=cursor,
    )


@router.get("/api/v1/data/{entity_type}")
async def current_data(
    entity_type: str, caller: TenantCaller, backend: BackendDep, location: str | None = None, limit: Limit = 100
) -> list[dict[str, Any]]:
    return backend.current(caller.tenant.tenant_code, entity_type, location, limit)


@router.post("/api/v1/integrations/{integration_type}/update")
async def write_back(
    integration_type: str,
    body: UpdateIn,
    caller: TenantCaller,
    backend: BackendDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    _known_type(integration_type)
    if not idempotency_key:
        raise McpSimError(400, "Idempotency-Key header required")
    status, payload = backend.update(
        caller.tenant.tenant_code, integration_type, body.model_dump(exclude_none=True), idempotency_key
    )
    return JSONResponse(payload, status_code=status)


@router.get("/api/v1/integrations/{integration_type}/changes")
async def changes(integration_type: str, caller: TenantCaller, backend: BackendDep, limit: Limit = 100) -> Any:
    return backend.changes_for(caller.tenant.tenant_code, _known_type(integration_type), limit)


# ---------------------------------------------------------------- syncs


@router.post("/api/v1/sync/run")
async def run_sync(body: SyncIn, caller: TenantCaller, backend: BackendDep) -> dict[str, Any]:
    return backend.run_sync(caller.tenant.tenant_code, body.model_dump())


@router.get("/api/v1/sync/{sync_id}")
async def get_sync(sync_id: str, caller: TenantCaller, backend: BackendDep) -> dict[str, Any]:
    return backend.sync(caller.tenant.tenant_code, sync_id)


# ---------------------------------------------------------------- webhook subscriptions


@router.post("/api/v1/webhooks", status_code=201)
async def subscribe(body: WebhookIn, caller: TenantCaller, backend: BackendDep) -> dict[str, Any]:
    return backend.subscribe(caller.tenant.tenant_code, body.url, body.secret, body.events).view()


@router.get("/api/v1/webhooks")
async def list_webhooks(caller: TenantCaller, backend: BackendDep) -> list[dict[str, Any]]:
    return [w.view() for w in backend.webhooks.values() if w.tenant_code == caller.tenant.tenant_code]


@router.delete("/api/v1/webhooks/{webhook_id}", status_code=204)
async def unsubscribe(webhook_id: str, caller: TenantCaller, backend: BackendDep) -> None:
    backend.unsubscribe(caller.tenant.tenant_code, webhook_id)
