"""`McpClient`: the async client every service uses to talk to the DentalERP MCP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx

from apev_runtime.http import CircuitOpenError, HostBreakers, ResilientClient, RetryPolicy, resilient_client
from apev_runtime.mcp._errors import McpCircuitOpenError, McpNotFoundError, McpUnavailableError, error_from_response
from apev_runtime.mcp._models import (
    ApiKey,
    ApiKeyInfo,
    IntegrationRegistration,
    IntegrationStatus,
    NewTenant,
    Page,
    RegisteredIntegration,
    SyncRequest,
    SyncRun,
    Tenant,
    WriteBack,
    WriteBackResult,
)
from apev_runtime.mcp._schemas import normalise

MAX_LIMIT = 1000


class McpClient:
    """Async client for one MCP base URL and one API key (an admin key or a ``{tenant}_sk_...`` key; None sends none).

    ``tenant`` sends ``X-Tenant-ID``; without it the server takes the tenant from the key's prefix.
    Every call raises a typed `McpError` on a non-2xx answer; retries and the host's breaker come from
    `apev_runtime.http` (pass one shared ``breakers`` per process so consumers can pause on an open one).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        tenant: str | None = None,
        timeout: float = 10.0,
        breakers: HostBreakers | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"Accept": "application/json", **dict(headers or {})}
        if api_key is not None:
            all_headers["Authorization"] = f"Bearer {api_key}"
        if tenant is not None:
            all_headers["X-Tenant-ID"] = tenant
        self.tenant = tenant
        self._http: ResilientClient = resilient_client(
            base_url, timeout=timeout, headers=all_headers, breakers=breakers, retry=retry, transport=transport
        )

    @property
    def breakers(self) -> HostBreakers:
        return self._http.breakers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(
                method, path, params=clean or None, json=json, headers=headers, idempotent=idempotent
            )
        except CircuitOpenError as exc:
            raise McpCircuitOpenError(exc.host, exc.retry_at, exc.retry_in) from exc
        except httpx.TransportError as exc:
            raise McpUnavailableError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return response.json() if response.content else None
        raise error_from_response(response)

    # ------------------------------------------------------------------ tenants and keys

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/health")
        return result

    async def list_tenants(self, *, limit: int = 100) -> list[Tenant]:
        body = await self._call("GET", "/api/v1/tenants/", params={"limit": limit})
        return [Tenant.model_validate(t) for t in body]

    async def get_tenant(self, tenant_code: str) -> Tenant:
        return Tenant.model_validate(await self._call("GET", f"/api/v1/tenants/{tenant_code}"))

    async def create_tenant(self, tenant: NewTenant) -> Tenant:
        return Tenant.model_validate(await self._call("POST", "/api/v1/tenants/", json=tenant.model_dump(mode="json")))

    async def create_api_key(self, tenant_code: str) -> ApiKey:
        """Mint a key valid only for ``tenant_code`` (needs the admin key)."""
        return ApiKey.model_validate(await self._call("POST", f"/api/v1/tenants/{tenant_code}/api-keys"))

    async def list_api_keys(self, tenant_code: str) -> list[ApiKeyInfo]:
        """The tenant's valid keys, oldest first, without their secrets (needs the admin key)."""
        body = await self._call("GET", f"/api/v1/tenants/{tenant_code}/api-keys")
        return [ApiKeyInfo.model_validate(k) for k in body]

    async def revoke_api_key(self, tenant_code: str, key_id: str) -> bool:
        """Refuse the key from now on (needs the admin key); False when it was already gone."""
        try:
            await self._call("DELETE", f"/api/v1/tenants/{tenant_code}/api-keys/{key_id}", idempotent=True)
        except McpNotFoundError:
            return False
        return True

    # ------------------------------------------------------------------ integrations and data

    async def deregister_integration(self, integration_id: str, *, headers: Mapping[str, str] | None = None) -> bool:
        """Remove the integration; False when it was already gone (so a resumed removal is a no-op)."""
        try:
            await self._call("DELETE", f"/api/v1/integrations/{integration_id}", headers=headers, idempotent=True)
        except McpNotFoundError:
            return False
        return True

    async def register_integration(
        self, registration: IntegrationRegistration, *, headers: Mapping[str, str] | None = None
    ) -> RegisteredIntegration:
        """Idempotent on ``datasource_id``: registering again returns the same integration (so a lost response
        is resent)."""
        body = await self._call(
            "POST",
            "/api/v1/integrations/register",
            json=registration.model_dump(mode="json"),
            headers=headers,
            idempotent=True,
        )
        return RegisteredIntegration.model_validate(body)

    async def integration_status(self, integration_type: str | None = None) -> list[IntegrationStatus]:
        body = await self._call("GET", "/api/v1/integrations/status", params={"type": integration_type})
        return [IntegrationStatus.model_validate(s) for s in body]

    async def fetch_page(
        self,
        integration_id: str,
        entity_type: str,
        *,
        updated_since: datetime | None = None,
        limit: int = MAX_LIMIT,
        cursor: str | None = None,
    ) -> Page:
        params = {
            "entity_type": entity_type,
            "updated_since": updated_since.isoformat() if updated_since else None,
            "limit": limit,
            "cursor": cursor,
        }
        body = await self._call("GET", f"/api/v1/integrations/{integration_id}/data", params=params)
        return Page(records=[normalise(entity_type, r) for r in body["data"]], next_cursor=body.get("next_cursor"))

    async def iter_pages(
        self,
        integration_id: str,
        entity_type: str,
        *,
        updated_since: datetime | None = None,
        limit: int = MAX_LIMIT,
        cursor: str | None = None,
    ) -> AsyncIterator[Page]:
        """Every page from ``cursor`` (or the start) on. Keep a page's ``next_cursor`` to resume later."""
        while True:
            page = await self.fetch_page(
                integration_id, entity_type, updated_since=updated_since, limit=limit, cursor=cursor
            )
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def iter_records(
        self,
        integration_id: str,
        entity_type: str,
        *,
        updated_since: datetime | None = None,
        limit: int = MAX_LIMIT,
    ) -> AsyncIterator[dict[str, Any]]:
        async for page in self.iter_pages(integration_id, entity_type, updated_since=updated_since, limit=limit):
            for record in page.records:
                yield record

    async def current(self, entity_type: str, *, location: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Current records for a real-time read (``GET /api/v1/data/{entity_type}``), normalised."""
        body = await self._call("GET", f"/api/v1/data/{entity_type}", params={"location": location, "limit": limit})
        return [normalise(entity_type, r) for r in body]

    # ------------------------------------------------------------------ write-back and sync

    async def update(
        self,
        integration_type: str,
        change: WriteBack,
        *,
        idempotency_key: str,
        headers: Mapping[str, str] | None = None,
    ) -> WriteBackResult:
        """Write one change back. The same ``idempotency_key`` always yields the same outcome, applied once.

        ``headers`` carries per-call extras such as ``traceparent`` (ARCHITECTURE §8)."""
        body = await self._call(
            "POST",
            f"/api/v1/integrations/{integration_type}/update",
            json=change.model_dump(mode="json", exclude_none=True),
            headers={**dict(headers or {}), "Idempotency-Key": idempotency_key},
        )
        return WriteBackResult.model_validate(body)

    async def changes(self, integration_type: str, *, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call(
            "GET", f"/api/v1/integrations/{integration_type}/changes", params={"limit": limit}
        )
        return result

    async def run_sync(self, request: SyncRequest, *, headers: Mapping[str, str] | None = None) -> SyncRun:
        body = await self._call("POST", "/api/v1/sync/run", json=request.model_dump(), headers=headers)
        return SyncRun.model_validate(body)

    async def get_sync(self, sync_id: str) -> SyncRun:
        return SyncRun.model_validate(await self._call("GET", f"/api/v1/sync/{sync_id}"))

    async def register_webhook(self, url: str, secret: str, events: list[str] | None = None) -> dict[str, Any]:
        """Subscribe ``url`` to this tenant's webhooks (``sync.completed``, ``data.changed``)."""
        payload: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            payload["events"] = events
        result: dict[str, Any] = await self._call("POST", "/api/v1/webhooks", json=payload)
        return result

    async def unregister_webhook(self, webhook_id: str) -> bool:
        """Unsubscribe; False when the subscription was already gone."""
        try:
            await self._call("DELETE", f"/api/v1/webhooks/{webhook_id}", idempotent=True)
        except McpNotFoundError:
            return False
        return True

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
