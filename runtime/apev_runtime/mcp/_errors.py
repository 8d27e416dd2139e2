"""Typed MCP errors, each carrying the server's ``detail``.

McpError
├── McpAuthError               401 missing key, 403 invalid key (or a key of another tenant)
├── McpTenantError
│   ├── McpTenantRequiredError 400 no X-Tenant-ID and no tenant prefix on the key
│   ├── McpTenantNotFoundError 404 unknown tenant
│   └── McpTenantInactiveError 403 inactive tenant
├── McpNotFoundError           404 (integration, entity, sync run, ...)
├── McpConflictError           409 (stale expected_version, datasource registered with another type)
├── McpValidationError         422 (``detail`` is FastAPI's list) and other 400s
├── McpUnavailableError        429 / 5xx after retries, connection errors; ``retry_after`` when known
│   └── McpCircuitOpenError    the host's breaker refused the call (also a `CircuitOpenError`)
└── McpDataError               a record value does not fit its entity schema
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from apev_runtime.http import CircuitOpenError, parse_retry_after

INVALID_KEY_DETAIL = "Invalid or expired API key"
TENANT_REQUIRED_DETAIL = "Tenant identification required"


class McpError(Exception):
    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        Exception.__init__(self, message)  # not super(): McpCircuitOpenError also inherits CircuitOpenError
        self.status = status
        self.detail = detail


class McpAuthError(McpError):
    pass


class McpTenantError(McpError):
    pass


class McpTenantRequiredError(McpTenantError):
    pass


class McpTenantNotFoundError(McpTenantError):
    pass


class McpTenantInactiveError(McpTenantError):
    pass


class McpNotFoundError(McpError):
    pass


class McpConflictError(McpError):
    pass


class McpValidationError(McpError):
    pass


class McpUnavailableError(McpError):
    def __init__(
        self, message: str, *, status: int | None = None, detail: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class McpCircuitOpenError(McpUnavailableError, CircuitOpenError):
    def __init__(self, host: str, retry_at: datetime, retry_in: float) -> None:
        McpUnavailableError.__init__(
            self, f"circuit breaker for {host} is open; retry at {retry_at.isoformat()}", retry_after=retry_in
        )
        self.host = host
        self.retry_at = retry_at
        self.retry_in = retry_in


class McpDataError(McpError):
    def __init__(self, entity_type: str, field: str, value: Any, expected: str) -> None:
        super().__init__(f"{entity_type}.{field}: expected {expected}, got {value!r}", detail=None)
        self.entity_type = entity_type
        self.field = field
        self.value = value
        self.expected = expected


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def error_from_response(response: httpx.Response) -> McpError:
    """The typed error for a non-2xx MCP response."""
    status = response.status_code
    detail = _detail(response)
    text = detail if isinstance(detail, str) else str(detail)
    where = f"{response.request.method} {response.request.url.path}"
    message = f"{where} -> {status}: {text}"
    kwargs: dict[str, Any] = {"status": status, "detail": detail}
    if status == 400 and text == TENANT_REQUIRED_DETAIL:
        return McpTenantRequiredError(message, **kwargs)
    if status == 401:
        return McpAuthError(message, **kwargs)
    if status == 403:
        if "inactive" in text.lower():
            return McpTenantInactiveError(message, **kwargs)
        return McpAuthError(message, **kwargs)
    if status == 404:
        if text.startswith("Tenant"):
            return McpTenantNotFoundError(message, **kwargs)
        return McpNotFoundError(message, **kwargs)
    if status == 409:
        return McpConflictError(message, **kwargs)
    if status in (400, 422):
        return McpValidationError(message, **kwargs)
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return McpUnavailableError(message, retry_after=retry_after, **kwargs)
    return McpError(message, **kwargs)
