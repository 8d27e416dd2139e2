"""The MCP client: how services talk to the DentalERP MCP server (Mapping & Control Plane, a REST service).

    async with McpClient(base_url, api_key, tenant="acme", breakers=shared_breakers) as mcp:
        reg = await mcp.register_integration(IntegrationRegistration(integration_type="adp", datasource_id="ds-1"))
        async for page in mcp.iter_pages(reg.integration_id, "employees", updated_since=watermark):
            ...                       # page.records: lower-case keys, Decimal money, int counts, date/datetime
        await mcp.update("adp", WriteBack(entity_type="employees", entity_id="E00001", changes={...},
                                          reason="..."), idempotency_key=str(event_id))

Conventions of the server it follows: ``Authorization: Bearer <key>`` and ``X-Tenant-ID`` (else the tenant is
the key's prefix before the first ``_``), ``{"detail": ...}`` errors mapped to typed `McpError` subclasses,
``limit`` paging (max 1000) with a cursor on the bulk data endpoint, Snowflake-style UPPERCASE string records
normalised per entity schema (`ENTITY_SCHEMAS`, `normalise`). Retries honour ``Retry-After`` for 429/503 and
retry connection errors (a write-back is resent only because it carries an ``Idempotency-Key``); a breaker per
host refuses calls while the server is down (`McpCircuitOpenError`, with ``retry_in``). `WebhookVerifier`
checks the server's signed webhooks (HMAC-SHA256 over ``timestamp + "." + body``, constant-time compare,
timestamp window, replay cache).
"""

from apev_runtime.mcp._client import MAX_LIMIT, McpClient
from apev_runtime.mcp._errors import (
    McpAuthError,
    McpCircuitOpenError,
    McpConflictError,
    McpDataError,
    McpError,
    McpNotFoundError,
    McpTenantError,
    McpTenantInactiveError,
    McpTenantNotFoundError,
    McpTenantRequiredError,
    McpUnavailableError,
    McpValidationError,
    error_from_response,
)
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
from apev_runtime.mcp._schemas import ENTITY_ID_FIELDS, ENTITY_SCHEMAS, INTEGRATION_ENTITIES, Kind, normalise
from apev_runtime.mcp._webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayCache,
    WebhookEvent,
    WebhookVerificationError,
    WebhookVerifier,
    sign,
    signed_headers,
)

__all__ = [
    "DELIVERY_HEADER",
    "ENTITY_ID_FIELDS",
    "ENTITY_SCHEMAS",
    "EVENT_HEADER",
    "INTEGRATION_ENTITIES",
    "MAX_LIMIT",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ApiKey",
    "ApiKeyInfo",
    "IntegrationRegistration",
    "IntegrationStatus",
    "Kind",
    "McpAuthError",
    "McpCircuitOpenError",
    "McpClient",
    "McpConflictError",
    "McpDataError",
    "McpError",
    "McpNotFoundError",
    "McpTenantError",
    "McpTenantInactiveError",
    "McpTenantNotFoundError",
    "McpTenantRequiredError",
    "McpUnavailableError",
    "McpValidationError",
    "NewTenant",
    "Page",
    "RegisteredIntegration",
    "ReplayCache",
    "SyncRequest",
    "SyncRun",
    "Tenant",
    "WebhookEvent",
    "WebhookVerificationError",
    "WebhookVerifier",
    "WriteBack",
    "WriteBackResult",
    "error_from_response",
    "normalise",
    "sign",
    "signed_headers",
]
