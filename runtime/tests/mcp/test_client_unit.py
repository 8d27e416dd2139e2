"""The client through httpx's transport seam: headers it sends and how answers map to typed errors."""

import json
from decimal import Decimal

import httpx
import pytest

from apev_runtime.http import RetryPolicy
from apev_runtime.mcp import (
    McpAuthError,
    McpClient,
    McpConflictError,
    McpError,
    McpNotFoundError,
    McpTenantInactiveError,
    McpTenantNotFoundError,
    McpTenantRequiredError,
    McpUnavailableError,
    McpValidationError,
    WriteBack,
)


def answering(status: int, body: object, seen: list[httpx.Request] | None = None, headers=None):
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body, headers=headers or {})

    return httpx.MockTransport(handler)


async def test_sends_auth_tenant_idempotency_and_trace_headers() -> None:
    seen: list[httpx.Request] = []
    result = {
        "change_id": "c1",
        "status": "applied",
        "entity_type": "employees",
        "entity_id": "E1",
        "version": 2,
        "applied_at": "2026-01-01T00:00:01Z",
    }
    transport = answering(200, result, seen)
    async with McpClient("http://mcp.test", "acme_sk_1", tenant="acme", transport=transport) as client:
        change = WriteBack(
            entity_type="employees", entity_id="E1", changes={"annual_salary": Decimal("1.10")}, reason="r"
        )
        await client.update("adp", change, idempotency_key="k-1", headers={"traceparent": "00-abc-def-01"})
    [request] = seen
    assert request.url.path == "/api/v1/integrations/adp/update"
    assert request.headers["Authorization"] == "Bearer acme_sk_1"
    assert request.headers["X-Tenant-ID"] == "acme"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["traceparent"] == "00-abc-def-01"
    assert json.loads(request.content) == {
        "entity_type": "employees",
        "entity_id": "E1",
        "changes": {"annual_salary": "1.10"},  # Decimal on the wire as a string, never a float
        "reason": "r",
    }


@pytest.mark.parametrize(
    ("status", "detail", "error"),
    [
        (400, "Tenant identification required", McpTenantRequiredError),
        (400, "Invalid cursor for entity_type 'x'", McpValidationError),
        (401, "Not authenticated", McpAuthError),
        (403, "Invalid or expired API key", McpAuthError),
        (403, "Tenant 'dormant' is inactive", McpTenantInactiveError),
        (404, "Tenant 'ghost' not found", McpTenantNotFoundError),
        (404, "employees 'E9' not found", McpNotFoundError),
        (409, "employees 'E1' is at version 3, expected 2", McpConflictError),
        (422, [{"loc": ["body", "reason"], "msg": "Field required"}], McpValidationError),
        (500, "boom", McpUnavailableError),
        (418, "teapot", McpError),
    ],
)
async def test_errors_are_typed_and_carry_the_detail(status: int, detail: object, error: type[McpError]) -> None:
    transport = answering(status, {"detail": detail})
    async with McpClient("http://mcp.test", "k", retry=RetryPolicy(attempts=1), transport=transport) as client:
        with pytest.raises(error) as raised:
            await client.integration_status()
    assert type(raised.value) is error
    assert raised.value.status == status
    assert raised.value.detail == detail
