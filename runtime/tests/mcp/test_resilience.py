import asyncio

import pytest

from apev_runtime.http import BreakerState, CircuitOpenError, HostBreakers, RetryPolicy
from apev_runtime.mcp import (
    IntegrationRegistration,
    McpCircuitOpenError,
    McpClient,
    McpUnavailableError,
    SyncRequest,
)

STATUS_ROUTE = "GET /api/v1/integrations/status"
DATA_ROUTE = "GET /api/v1/integrations/{integration_id}/data"


@pytest.mark.parametrize("kind", ["429", "503"])
async def test_429_and_503_faults_are_retried_and_succeed(tenant, mcp_sim, kind: str) -> None:
    reg = await tenant.client.register_integration(
        IntegrationRegistration(integration_type="dentalintel", datasource_id="ds-1")
    )
    mcp_sim.add_fault(kind, "/api/v1/integrations/{integration_id}/data", count=2, retry_after=0)
    mcp_sim.reset_counters()
    page = await tenant.client.fetch_page(reg.integration_id, "locations")
    assert len(page.records) == 8
    assert mcp_sim.counters()[DATA_ROUTE] == 3


async def test_exhausted_retries_raise_unavailable_with_retry_after(tenant, mcp_sim, make_client) -> None:
    mcp_sim.add_fault("429", "/api/v1/integrations/status", retry_after=0)
    client = make_client(tenant.key, retry=RetryPolicy(attempts=2, wait_initial=0.01, wait_jitter=0))
    with pytest.raises(McpUnavailableError) as unavailable:
        await client.integration_status()
    assert unavailable.value.status == 429
    assert unavailable.value.retry_after == 0


async def test_breaker_opens_after_repeated_failures_and_half_opens_after_cool_down(
    tenant, mcp_sim, make_client
) -> None:
    now = [0.0]  # the breaker's clock: moved by hand, so a slow machine cannot half-open it early
    breakers = HostBreakers(failure_threshold=3, cool_down=30, clock=lambda: now[0])
    client = make_client(tenant.key, breakers=breakers, retry=RetryPolicy(attempts=1))
    mcp_sim.add_fault("503", "/api/v1/integrations/status")
    mcp_sim.reset_counters()
    for _ in range(3):
        with pytest.raises(McpUnavailableError) as failed:
            await client.integration_status()
        assert failed.value.status == 503
    breaker = breakers.for_host(mcp_sim.base_url)
    assert breaker.state is BreakerState.OPEN

    with pytest.raises(McpCircuitOpenError) as refused:
        await client.integration_status()
    assert isinstance(refused.value, CircuitOpenError)  # generic code catching the runtime's error sees it too
    assert refused.value.retry_in == 30
    assert mcp_sim.counters()[STATUS_ROUTE] == 3  # refused without a request

    now[0] += 30
    assert breaker.state is BreakerState.HALF_OPEN
    mcp_sim.clear_faults()
    assert await client.integration_status() == []
    assert breaker.state is BreakerState.CLOSED


async def test_connection_refused_is_unavailable() -> None:
    policy = RetryPolicy(attempts=2, wait_initial=0.01, wait_jitter=0)
    async with McpClient("http://127.0.0.1:9", "acme_sk_x", retry=policy) as client:  # nothing listens on 9
        with pytest.raises(McpUnavailableError, match="ConnectError"):
            await client.health()


async def test_added_latency_still_answers(tenant, mcp_sim) -> None:
    mcp_sim.add_fault("latency", "/api/v1/integrations/status", latency_ms=200, count=1)
    started = asyncio.get_running_loop().time()
    assert await tenant.client.integration_status() == []
    assert asyncio.get_running_loop().time() - started >= 0.2


async def test_register_is_resent_after_a_lost_response(tenant, mcp_sim) -> None:
    mcp_sim.add_fault("lost_response", "/api/v1/integrations/register", count=1)
    mcp_sim.reset_counters()
    reg = await tenant.client.register_integration(
        IntegrationRegistration(integration_type="netsuite", datasource_id="ds-lost")
    )
    assert mcp_sim.counters()["POST /api/v1/integrations/register"] == 2
    [status] = await tenant.client.integration_status("netsuite")
    assert status.extra_data["integration_id"] == reg.integration_id


async def test_sync_run_is_not_resent_after_a_lost_response(tenant, mcp_sim) -> None:
    mcp_sim.add_fault("lost_response", "/api/v1/sync/run", count=1)
    mcp_sim.reset_counters()
    with pytest.raises(McpUnavailableError, match="RemoteProtocolError"):
        await tenant.client.run_sync(SyncRequest(integration_type="adp"))
    assert mcp_sim.counters()["POST /api/v1/sync/run"] == 1
