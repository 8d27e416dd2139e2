import uuid
from decimal import Decimal

import pytest

from apev_runtime.mcp import McpConflictError, McpNotFoundError, McpValidationError, WriteBack

DATA_ROUTE = "GET /api/v1/integrations/{integration_id}/data"
UPDATE_ROUTE = "POST /api/v1/integrations/{integration_type}/update"


def raise_salary(entity_id: str = "E00001", **kwargs) -> WriteBack:
    return WriteBack(
        entity_type="employees",
        entity_id=entity_id,
        changes={"annual_salary": Decimal("99000.50")},
        reason="agent insight: retention risk",
        **kwargs,
    )


async def test_same_idempotency_key_twice_applies_once(tenant) -> None:
    key = str(uuid.uuid4())
    first = await tenant.client.update("adp", raise_salary(), idempotency_key=key)
    second = await tenant.client.update("adp", raise_salary(), idempotency_key=key)
    assert second == first
    assert first.version == 2
    changes = await tenant.client.changes("adp")
    assert [(c["idempotency_key"], c["entity_id"]) for c in changes] == [(key, "E00001")]
    assert changes[0]["changes"] == {"ANNUAL_SALARY": "99000.50"}
    [employee] = [r for r in await tenant.client.current("employees", limit=1000) if r["employee_id"] == "E00001"]
    assert employee["annual_salary"] == Decimal("99000.50")
    assert employee["version"] == 2


async def test_lost_response_is_resent_and_still_applied_once(tenant, mcp_sim) -> None:
    mcp_sim.add_fault("lost_response", "/api/v1/integrations/*/update", method="POST", count=1)
    mcp_sim.reset_counters()
    key = str(uuid.uuid4())
    result = await tenant.client.update("adp", raise_salary("E00002"), idempotency_key=key)
    assert result.version == 2
    assert mcp_sim.counters()[UPDATE_ROUTE] == 2  # the lost one and the retry
    again = await tenant.client.update("adp", raise_salary("E00002"), idempotency_key=key)
    assert again == result
    assert [c["idempotency_key"] for c in await tenant.client.changes("adp")] == [key]


async def test_stale_expected_version_is_a_conflict_and_stays_one(tenant) -> None:
    await tenant.client.update("adp", raise_salary("E00003"), idempotency_key="k-a")
    key = "k-stale"
    with pytest.raises(McpConflictError) as conflict:
        await tenant.client.update("adp", raise_salary("E00003", expected_version=1), idempotency_key=key)
    assert "expected 1" in conflict.value.detail
    with pytest.raises(McpConflictError):  # the same key answers the same, even though the version moved on
        await tenant.client.update("adp", raise_salary("E00003", expected_version=1), idempotency_key=key)
    ok = await tenant.client.update("adp", raise_salary("E00003", expected_version=2), idempotency_key="k-b")
    assert ok.version == 3


async def test_unknown_entity_and_bad_requests(tenant) -> None:
    with pytest.raises(McpNotFoundError) as missing:
        await tenant.client.update("adp", raise_salary("E99999"), idempotency_key="k-404")
    assert "E99999" in missing.value.detail
    with pytest.raises(McpValidationError, match="read-only"):
        bad = WriteBack(entity_type="employees", entity_id="E00001", changes={"version": 7}, reason="x")
        await tenant.client.update("adp", bad, idempotency_key="k-ro")
    await tenant.client.update("adp", raise_salary("E00004"), idempotency_key="k-reuse")
    with pytest.raises(McpValidationError, match="different request"):
        await tenant.client.update("adp", raise_salary("E00005"), idempotency_key="k-reuse")
    assert len(await tenant.client.changes("adp")) == 1
