"""Tenant and API-key checks, in the real server's order: tenant first (400/404/403), then the key (401/403)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from apev_mcpsim.exceptions import McpSimError
from apev_mcpsim.models import Backend, Tenant

INVALID_KEY = "Invalid or expired API key"


@dataclass(frozen=True)
class Caller:
    tenant: Tenant
    admin: bool


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


async def tenant_caller(request: Request) -> Caller:
    backend = backend_of(request)
    key = bearer(request)
    code = request.headers.get("x-tenant-id") or (key.split("_", 1)[0] if key and "_" in key else None)
    if not code:
        raise McpSimError(
            400,
            "Tenant identification required",
            message="Send the X-Tenant-ID header or use a tenant API key ({tenant_code}_sk_...)",
        )
    tenant = backend.tenant(code)
    if tenant.status != "active":
        raise McpSimError(403, f"Tenant '{code}' is inactive")
    if key is None:
        raise McpSimError(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    if not backend.key_valid_for(key, code):
        raise McpSimError(403, INVALID_KEY)
    return Caller(tenant, backend.is_admin(key))


async def admin_caller(request: Request) -> None:
    key = bearer(request)
    if key is None:
        raise McpSimError(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    if not backend_of(request).is_admin(key):
        raise McpSimError(403, INVALID_KEY)
